"""The stream runner through its real threads: lossless and live modes, failures, keys, errors."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from rtstyle.errors import InputError, PipelineError
from rtstyle.io.sinks import PreviewSink, Sink, Window
from rtstyle.io.sources import SyntheticSource
from rtstyle.pipeline.runner import StreamConfig, run_stream


class Collect(Sink):
    def __init__(self, fail_at: int | None = None):
        self.indices, self.fail_at, self.closed = [], fail_at, False

    def write(self, frame, image):
        if self.fail_at is not None and len(self.indices) == self.fail_at:
            raise OSError("disk full")
        self.indices.append(frame.index)

    def close(self):
        self.closed = True


def invert(images):
    return [255 - image for image in images]


def slow(seconds):
    def stylize(images):
        time.sleep(seconds)
        return invert(images)
    return stylize


def no_rtstyle_threads_left():
    deadline = time.time() + 2
    while time.time() < deadline:
        # (rtstyle-lease, the process's one thread renewing the output locks it holds, is no stream's.)
        if not [t for t in threading.enumerate() if t.name.startswith("rtstyle-") and t.name != "rtstyle-lease"]:
            return True
        time.sleep(0.05)
    return False


def test_lossless_mode_keeps_every_frame_in_order():
    sink = Collect()
    result = run_stream(SyntheticSource(64, 48, frames=37, realtime=False), invert, sink,
                        StreamConfig(batch=4, queue_frames=3))
    assert sink.indices == list(range(37)) and sink.closed
    assert result.metrics["frames"] == 37 and result.metrics["drops"] == 0 and not result.interrupted


def test_live_mode_drops_stale_frames_and_bounds_latency():
    """A 60 fps source into a 20 fps stylizer: frames are dropped, not queued, so latency stays low."""
    sink = Collect()
    source = SyntheticSource(64, 48, fps=60, frames=90)
    result = run_stream(source, slow(0.05), sink, StreamConfig(batch=1, live=True))
    stats = result.metrics
    assert stats["drops"] > 20
    assert stats["frames"] + stats["drops"] >= 85  # every frame was either shown or counted as dropped
    assert sink.indices == sorted(sink.indices)
    assert stats["latency_ms"]["p95"] < 200  # one stylize call (50 ms) plus at most one waiting frame


def test_live_batches_fill_within_the_wait():
    sink, sizes = Collect(), []

    def stylize(images):
        sizes.append(len(images))
        time.sleep(0.01)
        return invert(images)

    config = StreamConfig(batch=4, live=True, live_queue_frames=8, batch_wait_ms=50)
    result = run_stream(SyntheticSource(64, 48, fps=200, frames=80), stylize, sink, config)
    assert result.metrics["frames"] > 40
    # A 200 fps source fills a batch of 4 well within 50 ms: most batches are full, none is over.
    assert max(sizes) == 4 and sizes.count(4) > len(sizes) / 2, sizes


@pytest.mark.parametrize("where", ["stylize", "sink", "source"])
def test_a_failing_stage_stops_everything_within_two_seconds(where):
    class BrokenSource(SyntheticSource):
        def frames(self):
            for frame in super().frames():
                if frame.index == 5:
                    raise OSError("camera unplugged")
                yield frame

    def broken_stylize(images):
        raise RuntimeError("out of memory")

    source = (BrokenSource if where == "source" else SyntheticSource)(64, 48, fps=30, frames=None)
    stylize = broken_stylize if where == "stylize" else invert
    sink = Collect(fail_at=3 if where == "sink" else None)
    start = time.perf_counter()
    with pytest.raises(PipelineError, match=f"{'capture' if where == 'source' else where} stage failed"):
        run_stream(source, stylize, sink, StreamConfig(batch=1, live=True))
    assert time.perf_counter() - start < 2.5
    assert no_rtstyle_threads_left()


class FakeWindow:
    """Stands in for the preview window: records frames, returns scripted keys."""

    def __init__(self, keys):
        self.keys, self.shown, self.closed = list(keys), [], False

    def show(self, rgb):
        self.shown.append(rgb.shape)
        return self.keys.pop(0) if self.keys else -1

    def close(self):
        self.closed = True


def test_preview_keys_drive_style_strength_view_snapshot_and_quit(tmp_path):
    from rtstyle.live.controls import LiveControls
    from rtstyle.pipeline.metrics import Metrics

    controls = LiveControls(["a", "b", "c"])
    window = FakeWindow([ord("n"), ord("]"), ord("o"), ord("s"), -1, ord("p"), ord("p"), ord("["), ord("["),
                         ord("o"), 27])
    preview = PreviewSink(controls, Metrics(), window, snapshot_dir=tmp_path)
    seen = []

    def stylize(images):
        seen.append(controls.state())
        return invert(images)

    result = run_stream(SyntheticSource(64, 48, fps=30, frames=None, realtime=False), stylize, preview,
                        StreamConfig(batch=1, queue_frames=1), quit_event=controls.quit)
    assert result.interrupted and window.closed
    assert controls.style == "c" and controls.strength == pytest.approx(0.9) and controls.view == "original"
    assert ("b", 1.1) in seen
    assert len(list(tmp_path.glob("rtstyle-*.png"))) == 1
    assert (48, 128, 3) in window.shown  # side by side


def test_mirror_and_help_keys_change_what_the_preview_shows():
    import numpy as np

    from rtstyle.io.sinks import PREVIEW_KEYS
    from rtstyle.io.sources import Frame
    from rtstyle.live.controls import LiveControls
    from rtstyle.pipeline.metrics import Metrics

    preview = PreviewSink(LiveControls(["a", "b"]), Metrics(), FakeWindow([]))
    for keys, action, _ in PREVIEW_KEYS:  # every key in the help does something
        for key in keys:
            code = 27 if key == "Esc" else ord(key)
            assert preview.KEYS[code] in (action, "weaker", "stronger")
    picture = np.zeros((360, 480, 3), np.uint8)
    picture[:, :120] = 200  # bright on the left
    frame = Frame(picture, 0, 0)
    plain = preview.compose(frame, picture)
    assert preview.handle_key(ord("m")) == "mirror"
    mirrored = preview.compose(frame, picture)
    assert mirrored[90:, -120:].mean() > 150 and mirrored[90:, :120].mean() < 50 and plain[90:, :120].mean() > 150
    preview.handle_key(ord("M"))  # Caps Lock on: the same key
    assert not preview.mirror
    assert preview.handle_key(ord("h")) == "help"
    helped = preview.compose(frame, picture)
    white = (helped[90:].min(axis=2) > 200).sum()
    assert white > (plain[90:].min(axis=2) > 200).sum() + 1000  # lines of white text over the middle


@pytest.mark.parametrize("screen, size, expected", [((1920, 1080), (640, 480), (640, 480)),
                                                    ((1920, 1080), (3840, 2160), (1632, 918)),
                                                    ((800, 600), (1280, 720), (720, 405)),
                                                    (None, (1280, 720), (1280, 720))])
def test_the_window_opens_at_the_frame_size_fitted_to_the_screen(screen, size, expected):
    from rtstyle.io.display import fit_to_screen

    assert fit_to_screen(size, screen) == expected


class SizedWindow(FakeWindow):
    """A window shown at a given size, as a real one reports it (the preview draws its text at that size)."""

    def __init__(self, size):
        super().__init__([])
        self.size = size

    def fit(self, shape):
        pass

    def display_size(self, shape):
        return self.size


def _text_box(image, background):
    """Rows and columns the overlay drew on: where the picture is no longer its plain background."""
    drawn = np.abs(image.astype(np.int16) - background).max(axis=2) > 40
    rows, cols = np.flatnonzero(drawn.any(axis=1)), np.flatnonzero(drawn.any(axis=0))
    return rows.min(), rows.max(), cols.min(), cols.max()


@pytest.mark.parametrize("help_on", [False, True])
def test_overlay_text_fits_the_window_and_grows_with_it(help_on):
    """Checked on the pixels of what the window is given, whatever draws the text and whatever its metrics."""
    from rtstyle.io.sources import Frame
    from rtstyle.live.controls import LiveControls
    from rtstyle.pipeline.metrics import Metrics

    grey = 128
    picture = np.full((240, 320, 3), grey, np.uint8)
    controls = LiveControls(["starry-swirl-long-name", "b"])
    heights = {}
    for size in [(120, 90), (200, 150), (320, 240), (427, 240), (640, 480), (1280, 720), (1920, 1080), (2560, 1080)]:
        preview = PreviewSink(controls, Metrics(), SizedWindow(size))
        preview.help = help_on
        shown = preview.compose(Frame(picture, 0, 0), picture)
        assert shown.shape[:2] == (size[1], size[0])
        if help_on:  # the darkened panel is part of the picture: the text is what is white
            drawn = shown.min(axis=2) > 200
            rows, cols = np.flatnonzero(drawn.any(axis=1)), np.flatnonzero(drawn.any(axis=0))
            top, bottom, left, right = rows.min(), rows.max(), cols.min(), cols.max()
        else:
            top, bottom, left, right = _text_box(shown, grey)
        # Inside, clear of every edge: no letter cut off or touching the frame.
        assert left >= 1 and top >= 1 and right <= size[0] - 2 and bottom <= size[1] - 2, (size, left, right, bottom)
        heights[size] = bottom - top
    assert heights[(1920, 1080)] > 1.5 * heights[(320, 240)]  # readable on a big screen: text grows


class Palette(Sink):
    """Records each frame's mean colour."""

    def __init__(self):
        self.means = []

    def write(self, frame, image):
        self.means.append(image.reshape(-1, 3).mean(axis=0))

    def close(self):
        pass


def test_live_style_switching_through_the_torch_engine():
    from rtstyle.api import stylize_live
    from rtstyle.config import EngineConfig

    window, palette = FakeWindow([-1, -1, ord("n")] + [-1] * 6 + [ord("q")]), Palette()
    result = stylize_live(SyntheticSource(96, 64, fps=30, frames=None), "fast", ["mosaic", "woodcut"],
                          engine=EngineConfig(device="cpu", backend="torch"), window=window, record=palette)
    assert result.interrupted and result.metrics["frames"] >= 8
    # woodcut is near black and white, mosaic navy and gold: the frames after n have another palette.
    assert np.abs(palette.means[-1] - palette.means[0]).max() > 12, (palette.means[0], palette.means[-1])


class Tagged:
    """Stands in for a TorchStylizer: answers every image with its own tag."""

    def __init__(self, tag: str):
        self.tag = self.description = tag

    def submit(self, images, after=None, layout="rgb24"):
        from rtstyle.stylizers.torch import PendingBatch

        return PendingBatch([self.tag for _ in images], len(images))


def test_style_switch_builds_in_the_background_while_frames_keep_flowing():
    from rtstyle.live.controls import LiveControls, StyleSwitcher

    controls = LiveControls(["a", "b"])
    release = threading.Event()
    builds = []

    def build(name, strength):
        builds.append((name, strength))
        if name == "b" and not release.wait(10):
            raise AssertionError("never released")
        return Tagged(name)

    switcher = StyleSwitcher(controls, build)
    assert switcher([0]) == ["a"]
    controls.next_style()
    start = time.perf_counter()
    assert [switcher([0]) for _ in range(3)] == [["a"]] * 3  # the old style until the new one is built
    assert time.perf_counter() - start < 0.5 and controls.active == ("a", 1.0)
    release.set()
    deadline = time.monotonic() + 10
    while switcher([0]) != ["b"]:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert controls.active == ("b", 1.0)
    controls.next_style()
    assert switcher([0]) == ["a"] and builds == [("a", 1.0), ("b", 1.0)]  # kept: no second build


def test_a_style_that_fails_to_build_is_left_out_and_the_stream_goes_on():
    from rtstyle.errors import BackendError
    from rtstyle.live.controls import LiveControls, StyleSwitcher

    def build(name, strength):
        if name == "b":
            raise BackendError("no engine for b")
        return Tagged(name)

    controls = LiveControls(["a", "b", "c"])
    switcher = StyleSwitcher(controls, build)
    controls.next_style()  # to b, whose build fails in the background
    deadline = time.monotonic() + 10
    while "b" in controls.styles and time.monotonic() < deadline:
        assert switcher([0]) == ["a"]  # frames keep coming from the style shown
        time.sleep(0.01)
    assert controls.styles == ["a", "c"] and controls.state() == ("a", 1.0)
    assert "b left out: no engine for b" in controls.recent_notice()
    controls.next_style()  # n now goes on to c
    while switcher([0]) != ["c"] and time.monotonic() < deadline:
        time.sleep(0.01)
    assert switcher([0]) == ["c"]
    assert controls.recent_notice(seconds=0) is None  # a notice is shown for a while, then not


def test_a_broken_adapter_in_a_live_session_is_left_out(tmp_path, monkeypatch):
    """Through the real switcher, engine builds and preview: n onto a corrupt adapter file, and on. The file
    leaves the list, the overlay says so, and the stream stays on the style it shows."""
    from rtstyle.api import stylize_live
    from rtstyle.config import EngineConfig
    from rtstyle.live import session
    from rtstyle.live.controls import LiveControls

    made = []
    monkeypatch.setattr(session, "LiveControls", lambda *a, **k: made.append(LiveControls(*a, **k)) or made[-1])
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"not a safetensors file")
    window = FakeWindow([-1, ord("n")] + [-1] * 40 + [ord("q")])
    result = stylize_live(SyntheticSource(96, 64, fps=30, frames=None), "fast", ["mosaic", str(broken)],
                          engine=EngineConfig(device="cpu"), window=window)
    assert result.interrupted and result.metrics["frames"] >= 40
    controls = made[0]
    assert controls.styles == ["mosaic"] and controls.style == "mosaic" and controls.active[0] == "mosaic"
    notice = controls.recent_notice()
    assert notice is not None and "broken.safetensors" in notice


def test_an_interrupt_during_a_build_still_stops_the_stream():
    from rtstyle.live.controls import LiveControls, StyleSwitcher

    def build(name, strength):
        if name == "b":
            raise KeyboardInterrupt
        return Tagged(name)

    controls = LiveControls(["a", "b"])
    switcher = StyleSwitcher(controls, build)
    controls.next_style()
    with pytest.raises(KeyboardInterrupt):
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            switcher([0])
            time.sleep(0.01)


def test_no_display_is_a_clear_error(monkeypatch):
    import sys

    if not sys.platform.startswith("linux"):
        pytest.skip("display detection is Linux-specific")
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with pytest.raises(InputError, match="no display"):
        Window("test")


def test_a_window_without_pygame_says_how_to_get_it(monkeypatch):
    import sys

    monkeypatch.setenv("DISPLAY", ":0")
    monkeypatch.setitem(sys.modules, "pygame", None)  # any import of pygame now fails
    with pytest.raises(InputError, match=r"pygame-ce: pip install 'rtstyle\[live\]'.*--no-preview"):
        Window("test")


def test_webcam_cli_errors(capsys, tmp_path, monkeypatch):
    from rtstyle.cli.main import main

    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert main(["webcam", "--camera", "/dev/no-such-camera", "--no-preview", "--duration", "1"]) == 2
    assert main(["webcam", "--synthetic"]) == 2
    assert main(["webcam", "--size", "big"]) == 2
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"not an adapter")
    assert main(["webcam", "--synthetic", "--no-preview", "--duration", "1", "--model", "fast",
                 "--styles", f"mosaic,{broken}"]) == 2  # at the start, not when n reaches it
    err = capsys.readouterr().err.strip().splitlines()
    assert any("no camera" in line for line in err) and any("no display" in line for line in err)
    assert any("not a readable safetensors adapter" in line for line in err)


def test_webcam_cli_records_the_synthetic_scene(capsys, tmp_path):
    import json

    import av

    from rtstyle.cli.main import main

    out, stats = tmp_path / "rec.mp4", tmp_path / "stats.json"
    code = main(["webcam", "--synthetic", "--size", "96x64", "--fps", "20", "--no-preview", "--duration", "2",
                 "--model", "fast", "--record", str(out), "--stats-json", str(stats), "--device", "cpu"])
    assert code == 0, capsys.readouterr().err
    summary = json.loads(stats.read_text())
    with av.open(str(out)) as container:
        frames = sum(1 for _ in container.decode(video=0))
    assert frames == summary["frames"] > 10
    assert 1.0 < summary["seconds"] < 4


def test_memory_stays_flat_over_a_long_run():
    import resource

    def peak_mb():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    config = StreamConfig(batch=2, queue_frames=4)
    run_stream(SyntheticSource(320, 240, frames=200, realtime=False), invert, Collect(), config)
    before = peak_mb()
    run_stream(SyntheticSource(320, 240, frames=2000, realtime=False), invert, Collect(), config)
    assert peak_mb() - before < 40
