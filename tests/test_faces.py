"""Faces kept: the detector on real photos, the feathered mask, the tracker over time, and the stage through
files, photos, live streams, the Python API and serve's options."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rtstyle.errors import InputError
from rtstyle.pipeline.faces import (
    FULL,
    SHORT,
    Face,
    FaceStage,
    FaceTracker,
    Track,
    blend,
    face_mask,
    parse_faces,
    shared_detector,
)

ROOT = Path(__file__).resolve().parents[1]
ASTRONAUT_FACE = (226, 125)  # the centre of Eileen Collins's face in skimage's astronaut.png (512x512)
ON_FACE = (ASTRONAUT_FACE[0] / 512, ASTRONAUT_FACE[1] / 512 + 0.1)  # where the panned clips look


def photo(shared_data, name: str) -> np.ndarray:
    from rtstyle.io.images import read_image

    return read_image(shared_data / "content" / f"{name}.png")[0]


def invert(images):
    return [255 - image for image in images]


def test_faces_setting_words_and_strengths():
    assert (parse_faces("keep"), parse_faces("SOFT"), parse_faces("off"), parse_faces("0.3")) == (1.0, 0.5, 0.0, 0.3)
    for bad in ("2", "-0.1", "faces", "nan"):
        with pytest.raises(InputError):
            parse_faces(bad)


@pytest.mark.parametrize("model", [SHORT, FULL])
def test_the_detector_finds_the_astronauts_face_and_none_on_a_door(shared_data, model):
    found = shared_detector(model).detect(photo(shared_data, "astronaut"))
    assert len(found) == 1
    face = found[0]
    assert abs(face.cx - ASTRONAUT_FACE[0]) < 15 and abs(face.cy - ASTRONAUT_FACE[1]) < 15, face
    assert 80 < face.w < 130 and face.score > 0.8
    assert shared_detector(model).detect(photo(shared_data, "kodim01")) == []  # a door and a wall


def test_small_faces_need_the_full_range_model_files_and_photos_run_both(shared_data):
    rafting = photo(shared_data, "kodim14")
    assert len(shared_detector(FULL).detect(rafting)) >= 2 and shared_detector(SHORT).detect(rafting) == []
    assert len(FaceStage(1.0).detect(rafting)) >= 2
    cut = photo(shared_data, "kodim15")  # a face cut by the picture's edge: the short-range model's
    assert len(FaceStage(1.0).detect(cut)) == 1


def test_the_mask_is_a_feathered_ellipse_with_no_edge():
    mask, (rows, cols) = face_mask((400, 400), [Track(Face(200, 200, 100, 100))])
    full = np.zeros((400, 400), np.float32)
    full[rows, cols] = mask
    assert full[185, 200] == pytest.approx(1.0)  # the centre (the ellipse sits a little above the box's)
    assert full[0].max() == 0 and full[:, 0].max() == 0 and full[rows.start].max() < 0.01  # nothing at the borders
    assert full[rows.stop - 1].max() < 0.01 and full[:, cols.start].max() < 0.01 and full[:, cols.stop - 1].max() < 0.01
    steps = max(np.abs(np.diff(full, axis=0)).max(), np.abs(np.diff(full, axis=1)).max())
    assert steps < 0.08  # no ring or rectangle: a ramp over a quarter of the face (smoothstep over 25 px: 0.06)
    assert 0.3 < (full > 0.5).mean() * 400 * 400 / (np.pi * 62 * 75) < 0.8  # an ellipse, not its box


def test_blend_changes_nothing_outside_the_faces(shared_data):
    original = photo(shared_data, "astronaut")
    stylized = 255 - original
    stage = FaceStage(1.0)
    out = stage.apply(original, stylized)
    mask, (rows, cols) = face_mask(original.shape, stage.last)
    outside = np.ones(original.shape[:2], bool)
    outside[rows, cols] = mask <= 0
    assert np.abs(out.astype(int) - stylized)[outside].max() == 0
    x, y = ASTRONAUT_FACE
    assert np.abs(out[y - 15:y + 15, x - 15:x + 15].astype(int) - original[y - 15:y + 15, x - 15:x + 15]).max() <= 1
    soft = FaceStage(0.5).apply(original, stylized)
    assert np.abs(soft[y, x].astype(int) - (original[y, x].astype(int) + stylized[y, x]) / 2).max() <= 1


def test_16_bit_pictures_keep_their_depth(shared_data):
    original = photo(shared_data, "astronaut").astype(np.uint16) * 257
    out = FaceStage(1.0).apply(original, 65535 - original)
    x, y = ASTRONAUT_FACE
    assert out.dtype == np.uint16 and abs(int(out[y, x, 0]) - int(original[y, x, 0])) <= 1


def test_a_face_lost_for_two_detections_keeps_its_mask_then_fades():
    tracker = FaceTracker()
    face = Face(100, 100, 50, 50)
    assert tracker.update([face])[0].weight == 1.0  # at the start of a stream: at once
    assert tracker.update([])[0].weight == 1.0
    assert tracker.update([])[0].weight == 1.0  # missed twice: still kept
    weights = [t[0].weight if t else 0.0 for t in (tracker.update([]) for _ in range(5))]
    assert weights[0] < 1.0 and weights == sorted(weights, reverse=True) and weights[-1] == 0.0
    assert tracker.tracks == []


def test_a_face_found_mid_stream_fades_in():
    tracker = FaceTracker()
    tracker.update([])
    weights = [tracker.update([Face(100, 100, 50, 50)])[0].weight for _ in range(5)]
    assert weights[0] < 0.5 and weights == sorted(weights) and weights[-1] == 1.0


def test_tracking_steadies_a_jittering_box_and_follows_a_moving_one():
    rng = np.random.default_rng(0)
    tracker = FaceTracker()
    raw, tracked = [], []
    for _ in range(60):
        seen = Face(200 + rng.normal(0, 2), 150 + rng.normal(0, 2), 80, 80)
        raw.append(seen.cx)
        tracked.append(tracker.update([seen])[0].face.cx)
    assert np.std(np.diff(tracked[10:])) < 0.6 * np.std(np.diff(raw[10:]))
    for step in range(30):  # then it walks 6 px a frame: the track keeps up within a face's tenth
        face = tracker.update([Face(200 + 6 * step, 150, 80, 80)])[0].face
    assert abs(face.cx - (200 + 6 * 29)) < 8


def test_no_face_mask_carries_across_a_scene_cut(shared_data):
    """A lost face keeps its mask for two frames (above), but not into a new shot: there it would
    show the new shot's own unstylized pixels through the last shot's oval."""
    import cv2

    astronaut = photo(shared_data, "astronaut")
    room = cv2.resize(photo(shared_data, "coffee"), astronaut.shape[1::-1])  # a cup, no face
    for live in (False, True):
        stage = FaceStage(1.0, live=live)
        for _ in range(4):
            stage.apply(astronaut, 255 - astronaut)
        assert stage.last  # the face is tracked
        out = stage.apply(room, 255 - room)
        assert not stage.last and np.array_equal(out, 255 - room)


def test_live_detects_every_third_frame_and_carries_the_boxes_between(shared_data):
    from rtstyle.io.synthetic import panned_frame

    astronaut = photo(shared_data, "astronaut")
    stage = FaceStage(1.0, live=True)
    calls = []
    detect = stage.detect
    stage.detect = lambda rgb: calls.append(1) or detect(rgb)
    for index in range(9):
        frame = panned_frame(astronaut, index, 320, 240, 30, ON_FACE)
        stage.apply(frame, 255 - frame)
        assert len(stage.last) == 1
    assert len(calls) == 3


def test_the_stage_in_a_stream_with_a_plain_function_stylizer(shared_data):
    from rtstyle.io.sinks import Sink
    from rtstyle.io.sources import Frame, Source
    from rtstyle.io.synthetic import panned_frame
    from rtstyle.pipeline.runner import StreamConfig, run_stream

    astronaut = photo(shared_data, "astronaut")

    class Panned(Source):
        size, fps, live, expected_frames = (320, 240), 30.0, False, 12

        def frames(self):
            for index in range(12):
                yield Frame(panned_frame(astronaut, index, 320, 240, 30, ON_FACE), index, index / 30)

        def close(self):
            pass

    class Keep(Sink):
        def __init__(self):
            self.pairs = []

        def write(self, frame, image):
            self.pairs.append((frame.image, image))

    sink = Keep()
    result = run_stream(Panned(), invert, sink, StreamConfig(batch=2), faces=FaceStage(1.0))
    assert len(sink.pairs) == 12 and result.metrics["stage_ms_per_frame"]["faces"] > 0
    for original, out in sink.pairs:
        face = shared_detector(FULL).detect(original)[0]
        x, y = round(face.cx), round(face.cy)
        assert np.abs(out[y - 8:y + 8, x - 8:x + 8].astype(int) - original[y - 8:y + 8, x - 8:x + 8]).mean() < 3
        assert np.abs(out[-20:, :20].astype(int) - (255 - original[-20:, :20])).max() == 0  # far from the face


def run_cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    code = "import sys; from rtstyle.cli.main import main; sys.exit(main())"
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, capture_output=True, text=True, timeout=300,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})


def test_cli_photo_and_video_keep_faces_with_the_lean_engine(shared_data, tmp_path):
    import av

    from rtstyle.io.images import read_image
    from rtstyle.io.synthetic import panned_frame

    astronaut = photo(shared_data, "astronaut")
    src = shared_data / "content" / "astronaut.png"
    for faces in ("off", "keep"):
        done = run_cli(["stylize", str(src), "-o", f"{faces}.png", "--style", "mosaic", "--faces", faces, "-q",
                        "--scale", "0.5"], tmp_path)
        assert done.returncode == 0, done.stderr
    x, y = ASTRONAUT_FACE
    crop = np.s_[y - 20:y + 20, x - 20:x + 20]
    off, kept = (read_image(tmp_path / f"{f}.png")[0].astype(int) for f in ("off", "keep"))
    assert np.abs(kept[crop] - astronaut[crop]).mean() < 4 < np.abs(off[crop] - astronaut[crop]).mean()
    assert np.abs(kept[-100:] - off[-100:]).max() == 0  # the suit and the helmet, far from the face: untouched

    clip = tmp_path / "pan.mp4"
    with av.open(str(clip), "w") as container:
        stream = container.add_stream("libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        for index in range(24):
            frame = av.VideoFrame.from_ndarray(panned_frame(astronaut, index, 320, 240, 24, ON_FACE), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    done = run_cli(["stylize", str(clip), "-o", "pan-keep.mp4", "--style", "mosaic", "--faces", "keep", "-q",
                    "--stats-json", "stats.json"], tmp_path)
    assert done.returncode == 0, done.stderr
    with av.open(str(tmp_path / "pan-keep.mp4")) as container:
        outs = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(outs) == 24
    for index in (0, 12, 23):
        original = panned_frame(astronaut, index, 320, 240, 24, ON_FACE)
        face = shared_detector(FULL).detect(original)[0]
        cx, cy = round(face.cx), round(face.cy)
        assert np.abs(outs[index][cy - 6:cy + 6, cx - 6:cx + 6].astype(int)
                      - original[cy - 6:cy + 6, cx - 6:cx + 6]).mean() < 12  # H.264 at crf 18 on both sides
    assert "faces" in json.dumps(json.loads((tmp_path / "stats.json").read_text()))


def test_bad_faces_on_the_cli_is_one_line(tmp_path, shared_data):
    done = run_cli(["stylize", str(shared_data / "content" / "astronaut.png"), "-o", "x.png", "--faces", "most"],
                   tmp_path)
    assert done.returncode == 2 and "--faces takes keep, soft, off" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_webcam_live_with_faces_through_the_api(shared_data, tmp_path):
    from rtstyle.api import stylize_live
    from rtstyle.io.sinks import RecordSink
    from rtstyle.io.sources import Frame, Source
    from rtstyle.io.synthetic import panned_frame
    from rtstyle.pipeline.runner import StreamConfig

    astronaut = photo(shared_data, "astronaut")

    class Camera(Source):
        size, fps, live, expected_frames = (320, 240), 10.0, True, 0

        def frames(self):
            import time

            for index in range(15):
                yield Frame(panned_frame(astronaut, index, 320, 240, 10, ON_FACE), index, index)
                time.sleep(0.1)

        def close(self):
            pass

    record = RecordSink(tmp_path / "live.mp4", (320, 240), 10.0)
    result = stylize_live(Camera(), "fast", ["mosaic"], record=record, preview=False,
                          config=StreamConfig(batch=1, live=True), faces="keep")
    assert result.metrics["frames"] >= 5
    assert result.metrics["stage_ms_per_frame"]["faces"] > 0


def test_serve_viewers_pick_faces_and_bad_values_are_refused():
    pytest.importorskip("aiortc")  # the serve extra
    from rtstyle.serve.server import ServeConfig
    from rtstyle.serve.viewer import ViewerOptions

    defaults = ViewerOptions("mosaic", faces=parse_faces("soft"))
    assert ViewerOptions.parse({}, ["mosaic"], defaults).faces == 0.5
    assert ViewerOptions.parse({"faces": 1}, ["mosaic"], defaults).faces == 1.0
    assert ViewerOptions.parse({"faces": "off"}, ["mosaic"], defaults).faces == 0.0
    with pytest.raises(InputError):
        ViewerOptions.parse({"faces": 3}, ["mosaic"], defaults)
    with pytest.raises(InputError):
        ServeConfig(faces=1.5)
    page = (ROOT / "rtstyle" / "serve" / "static" / "index.html").read_text()
    assert 'id="faces"' in page and "faces: ui.faces" in (ROOT / "rtstyle" / "serve" / "static" / "app.js").read_text()


def test_every_control_the_page_sends_is_one_the_server_takes():
    """The page's controls() keys, read from app.js, pass the offer's and the data channel's checks
    (a key added on one side only made every browser viewer's offer fail with 'unknown key')."""
    pytest.importorskip("aiortc")
    import re

    from rtstyle.serve.server import read_offer
    from rtstyle.serve.viewer import read_message

    script = (ROOT / "rtstyle" / "serve" / "static" / "app.js").read_text()
    body = re.search(r"function controls\(\) \{\s*return \{(.*?)\};", script, re.S).group(1)
    keys = re.findall(r"(\w+):", body)
    assert {"style", "strength", "faces"} <= set(keys)
    values = {"style": "mosaic", "smooth": "flow", "scale": "auto"}
    sent = {key: values.get(key, 0.5) for key in keys}
    assert read_message(json.dumps({"type": "controls", **sent}))["faces"] == 0.5
    assert read_offer(json.dumps({"type": "offer", "sdp": "v=0", "stamp": True, **sent}))["faces"] == 0.5


def test_blend_keeps_the_stylized_picture_where_no_face_is():
    picture = np.zeros((50, 60, 3), np.uint8)
    out = blend(picture, picture + 7, [], 1.0)
    assert (out == 7).all()


def test_the_preview_k_key_turns_faces_off_soft_and_kept():
    from rtstyle.io.sinks import PreviewSink
    from rtstyle.live.controls import LiveControls
    from rtstyle.pipeline.metrics import Metrics

    class Window:
        closed = False

        def show(self, rgb):
            return -1

        def close(self):
            pass

    stage = FaceStage(0.0, live=True)
    preview = PreviewSink(LiveControls(["mosaic"]), Metrics(), Window(), faces=stage)
    seen = []
    for _ in range(3):
        assert preview.handle_key(ord("k")) == "faces"
        seen.append((stage.strength, stage.describe()))
    assert seen == [(0.5, "faces soft"), (1.0, "faces keep"), (0.0, "")]
    assert stage._detectors is None  # never turned on long enough to detect: no model loaded


def test_webcam_cli_with_faces(tmp_path):
    done = run_cli(["webcam", "--synthetic", "--size", "160x120", "--fps", "10", "--no-preview", "--duration", "1.5",
                    "--record", "live.mp4", "--faces", "keep", "--model", "fast"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "live.mp4").stat().st_size > 0


def test_the_torch_engine_with_its_submit_path_keeps_faces_too(shared_data):
    """The stage sits after the engine: the torch path (submit, smoother on its device) is no different."""
    pytest.importorskip("torch")
    from rtstyle.api import load_stylizer
    from rtstyle.config import EngineConfig
    from rtstyle.io.sinks import Sink
    from rtstyle.io.sources import Frame, Source
    from rtstyle.io.synthetic import panned_frame
    from rtstyle.model.styles import StyleChoice
    from rtstyle.pipeline.runner import StreamConfig, run_stream

    astronaut = photo(shared_data, "astronaut")
    stylizer = load_stylizer("fast", StyleChoice({"mosaic": 1.0}), EngineConfig(backend="torch", device="cpu"))

    class Panned(Source):
        size, fps, live, expected_frames = (320, 240), 30.0, False, 4

        def frames(self):
            for index in range(4):
                yield Frame(panned_frame(astronaut, index, 320, 240, 30, ON_FACE), index, index)

    class Keep(Sink):
        layout = "yuv420p"  # what a file sink asks for: the face stage needs RGB, and gets it

        def __init__(self):
            self.pairs = []

        def write(self, frame, image):
            self.pairs.append((frame.image, image))

    sink = Keep()
    run_stream(Panned(), stylizer, sink, StreamConfig(batch=2), smoother=stylizer.make_smoother("ema", 0.5),
               faces=FaceStage(1.0))
    assert len(sink.pairs) == 4
    for original, out in sink.pairs:
        assert out.shape == original.shape
        face = shared_detector(FULL).detect(original)[0]
        x, y = round(face.cx), round(face.cy)
        assert np.abs(out[y - 8:y + 8, x - 8:x + 8].astype(int) - original[y - 8:y + 8, x - 8:x + 8]).mean() < 3
