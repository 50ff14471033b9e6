"""File conversion through the real threads, PyAV decode/encode and audio remux."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest

from rtstyle.config import ConvertConfig
from rtstyle.errors import InputError, OutputError, PipelineError
from rtstyle.io.synthetic import scene_frame
from rtstyle.io.video import VideoReader
from rtstyle.jobs.convert import convert_file


def leftovers(folder):
    """Temporary files and locks a conversion left behind."""
    return sorted(p.name for p in folder.glob(".*") if "rtstyle-" in p.name)


def probe(path):
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        result = {
            "rate": video.average_rate,
            "video_duration": float(video.duration * video.time_base),
            "audio": [(s.codec_context.name, float(s.duration * s.time_base), s.frames)
                      for s in container.streams.audio],
        }
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    result["frames"] = frames
    return result


def test_video_keeps_frames_rate_duration_and_audio(clip, tmp_path, fast_stylizer):
    out = tmp_path / "out.mp4"
    result = convert_file(clip, out, fast_stylizer, ConvertConfig(batch=3))
    before, after = probe(clip), probe(out)
    assert result.frames == len(before["frames"]) == len(after["frames"]) == 48
    assert after["rate"] == before["rate"] == 24
    assert after["video_duration"] == pytest.approx(before["video_duration"], abs=1e-3)
    assert len(after["audio"]) == 1
    codec, duration, packets = after["audio"][0]
    assert (codec, packets) == (before["audio"][0][0], before["audio"][0][2])
    assert duration == pytest.approx(before["audio"][0][1], abs=1e-3)
    # Really stylized: far from the input frames, and not a constant picture.
    diff = np.mean([np.abs(a.astype(int) - b.astype(int)).mean() for a, b in zip(before["frames"], after["frames"])])
    assert diff > 20
    assert np.std(after["frames"][10]) > 10
    assert not leftovers(tmp_path)


def test_audio_packets_are_copied_bit_exact(clip, tmp_path, fast_stylizer):
    out = tmp_path / "out.mkv"
    convert_file(clip, out, fast_stylizer, ConvertConfig())

    def packets(path):
        with av.open(str(path)) as container:
            return [bytes(p) for p in container.demux(audio=0) if p.size]

    assert packets(out) == packets(clip)


def test_no_audio_option_drops_audio(clip, tmp_path, fast_stylizer):
    out = tmp_path / "silent.mp4"
    convert_file(clip, out, fast_stylizer, ConvertConfig(copy_audio=False))
    assert probe(out)["audio"] == []


def write_frames(path, frames, fps=24, rotation=0, audio=False):
    height, width = frames[0].shape[:2]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p" if width % 2 == 0 and height % 2 == 0 else "yuv444p"
        if rotation:
            stream.set_display_rotation(rotation)
        for index, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = index, Fraction(1, fps)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def test_odd_size_video_keeps_its_size(tmp_path, fast_stylizer):
    src = write_frames(tmp_path / "odd.mp4", [scene_frame(i, 75, 41) for i in range(7)])
    out = tmp_path / "odd_out.mp4"
    result = convert_file(src, out, fast_stylizer, ConvertConfig(batch=4))
    frames = probe(out)["frames"]
    assert (result.width, result.height) == (75, 41)
    assert len(frames) == 7 and frames[0].shape == (41, 75, 3)


def test_rotation_metadata_is_applied(tmp_path, fast_stylizer):
    image = np.zeros((48, 80, 3), np.uint8)
    image[:, :40] = 255  # left half white: after a 90-degree counter-clockwise turn it is the bottom half
    src = write_frames(tmp_path / "rotated.mp4", [image] * 3, rotation=90)
    with VideoReader(src) as reader:
        upright = next(iter(reader)).image
    assert upright.shape == (80, 48, 3)
    assert upright[60:].mean() > 200 and upright[:20].mean() < 50
    out = tmp_path / "rotated_out.mp4"
    convert_file(src, out, fast_stylizer, ConvertConfig())
    with av.open(str(out)) as container:
        frame = next(container.decode(video=0))
        assert (frame.width, frame.height) == (48, 80)
        assert not (frame.rotation or 0)


def test_max_side_scales_down(clip, tmp_path, fast_stylizer):
    out = tmp_path / "small.mp4"
    result = convert_file(clip, out, fast_stylizer, ConvertConfig(max_side=80))
    assert (result.width, result.height) == (80, 48)
    assert probe(out)["frames"][0].shape == (48, 80, 3)


def test_still_image_with_alpha_and_exif_orientation(tmp_path, fast_stylizer):
    from PIL import Image

    rgba = Image.fromarray(np.dstack([scene_frame(3, 60, 40), np.full((40, 60), 128, np.uint8)]), "RGBA")
    rgba.save(tmp_path / "in.png")
    result = convert_file(tmp_path / "in.png", tmp_path / "out.png", fast_stylizer, ConvertConfig())
    with Image.open(tmp_path / "out.png") as out:
        assert out.mode == "RGBA" and out.size == (60, 40)
        assert np.asarray(out)[..., 3].max() == 128
        diff = np.abs(np.asarray(out.convert("RGB"), int) - np.asarray(rgba.convert("RGB"), int)).mean()
        assert diff > 20
    assert result.frames == 1

    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 clockwise to display
    Image.fromarray(scene_frame(3, 60, 40)).save(tmp_path / "exif.jpg", exif=exif)
    convert_file(tmp_path / "exif.jpg", tmp_path / "exif_out.jpg", fast_stylizer, ConvertConfig())
    with Image.open(tmp_path / "exif_out.jpg") as out:
        assert out.size == (40, 60)


@pytest.mark.parametrize("name, content", [("notes.mp4", b"this is text, not video"), ("empty.mp4", b""),
                                           ("broken.png", b"\x89PNG\r\n\x1a\nbroken")])
def test_unreadable_inputs_are_input_errors(tmp_path, fast_stylizer, name, content):
    src = tmp_path / name
    src.write_bytes(content)
    out = tmp_path / f"out{src.suffix}"
    with pytest.raises(InputError):
        convert_file(src, out, fast_stylizer, ConvertConfig())
    assert not out.exists() and not leftovers(tmp_path)


def test_a_truncated_mp4_is_refused_and_a_truncated_stream_is_converted_up_to_the_damage(tmp_path, fast_stylizer):
    from rtstyle.io.synthetic import write_clip

    # An MP4 keeps its index (moov) at the end: half of one cannot be read at all.
    data = write_clip(tmp_path / "c.mp4", seconds=2.0, width=160, height=96, fps=24).read_bytes()
    (tmp_path / "t.mp4").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="not a video or image file that can be read"):
        convert_file(tmp_path / "t.mp4", tmp_path / "t_out.mp4", fast_stylizer, ConvertConfig())
    assert not (tmp_path / "t_out.mp4").exists()
    # Matroska and MPEG-TS are read as streams: the frames before the cut are converted.
    for suffix in (".mkv", ".ts"):
        data = write_clip(tmp_path / f"c{suffix}", seconds=2.0, width=160, height=96, fps=24).read_bytes()
        (tmp_path / f"t{suffix}").write_bytes(data[: len(data) // 2])
        result = convert_file(tmp_path / f"t{suffix}", tmp_path / f"t{suffix}.mp4", fast_stylizer, ConvertConfig())
        frames = len(probe(tmp_path / f"t{suffix}.mp4")["frames"])
        assert 10 < frames < 48 and frames == result.frames, (suffix, frames, result.frames)


@pytest.mark.parametrize("output", ["missing_dir/out.mp4", "out.png", "out.xyz", "clip_dir"])
def test_bad_outputs_are_refused_before_work(clip, tmp_path, fast_stylizer, output):
    (tmp_path / "clip_dir").mkdir()
    with pytest.raises(OutputError):
        convert_file(clip, tmp_path / output, fast_stylizer, ConvertConfig())


def test_output_may_not_overwrite_input(clip, fast_stylizer):
    with pytest.raises(OutputError, match="overwrite the input"):
        convert_file(clip, clip, fast_stylizer, ConvertConfig())


class ExplodingStylizer:
    """Fails on the n-th batch, like a backend that runs out of memory."""

    def __init__(self, inner, fail_at: int):
        self.inner, self.fail_at, self.calls = inner, fail_at, 0

    def __call__(self, images):
        self.calls += 1
        if self.calls == self.fail_at:
            raise RuntimeError("simulated device failure")
        return self.inner(images)


def test_a_failing_stage_stops_everything_and_leaves_nothing(clip, tmp_path, fast_stylizer):
    import threading
    import time

    out = tmp_path / "fail.mp4"
    start = time.perf_counter()
    with pytest.raises(PipelineError, match="stylize stage failed: RuntimeError: simulated device failure"):
        convert_file(clip, out, ExplodingStylizer(fast_stylizer, 3), ConvertConfig(batch=2))
    assert time.perf_counter() - start < 10
    assert not out.exists() and not leftovers(tmp_path)
    # (rtstyle-lease is the process's one thread renewing every output lock it holds, not this conversion's.)
    assert not [t for t in threading.enumerate() if t.name.startswith("rtstyle-") and t.name != "rtstyle-lease"]


def test_avi_output_header_says_what_it_holds(clip, tmp_path, fast_stylizer):
    """AVI counts frames: its header once claimed 2400 frames at 600 fps for a 120-frame clip."""
    out = tmp_path / "out.avi"
    result = convert_file(clip, out, fast_stylizer, ConvertConfig())
    with av.open(str(out)) as container:
        video = container.streams.video[0]
        assert video.frames == result.frames == 48 and video.average_rate == 24
        assert sum(1 for _ in container.decode(video=0)) == 48
        assert container.streams.audio


def test_container_and_stream_metadata_are_kept(clip, tmp_path, fast_stylizer):
    tagged = tmp_path / "tagged.mp4"
    with av.open(str(clip)) as src, av.open(str(tagged), "w") as dst:
        dst.metadata["title"] = "My trip"
        dst.metadata["creation_time"] = "2024-05-01T10:00:00.000000Z"
        streams = {}
        for stream in src.streams:
            streams[stream.index] = copy = dst.add_stream_from_template(stream)
            copy.metadata["language"] = "fra" if stream.type == "video" else "deu"
        for packet in src.demux():
            if packet.dts is not None:
                packet.stream = streams[packet.stream.index]
                dst.mux(packet)
    out = tmp_path / "out.mp4"
    convert_file(tagged, out, fast_stylizer, ConvertConfig())
    with av.open(str(out)) as container:
        assert container.metadata["title"] == "My trip"
        assert container.metadata["creation_time"].startswith("2024-05-01T10:00:00")
        assert [s.metadata.get("language") for s in container.streams] == ["fra", "deu"]


def test_webm_output_is_vp9_with_the_audio_in_opus(clip, tmp_path, fast_stylizer):
    out = tmp_path / "out.webm"
    result = convert_file(clip, out, fast_stylizer, ConvertConfig())
    with av.open(str(out)) as container:
        assert [(s.type, s.codec_context.name) for s in container.streams] == [("video", "vp9"), ("audio", "opus")]
        assert sum(1 for _ in container.decode(video=0)) == result.frames == 48
    with av.open(str(out)) as made, av.open(str(clip)) as source:
        seconds = sum(f.samples for f in made.decode(audio=0)) / 48000
        expected = sum(f.samples for f in source.decode(audio=0)) / source.streams.audio[0].rate
    assert seconds == pytest.approx(expected, abs=0.03)


def test_gif_output_is_small_and_keeps_its_pace(tmp_path, fast_stylizer):
    from PIL import Image

    from rtstyle.io.synthetic import write_clip

    src = write_clip(tmp_path / "in.mp4", seconds=2.0, width=640, height=360, fps=30)
    out = tmp_path / "out.gif"
    convert_file(src, out, fast_stylizer, ConvertConfig())
    gif = Image.open(out)
    assert gif.size == (480, 270) and gif.n_frames == 30  # 15 fps of 30, long side 480
    durations = []
    for index in range(gif.n_frames):
        gif.seek(index)
        durations.append(gif.info["duration"])
    assert sum(durations) == pytest.approx(2000, abs=20)  # the clip keeps its length
    assert gif.info.get("loop") == 0


def test_subtitles_are_copied_where_the_container_holds_them(clip, tmp_path, fast_stylizer, caplog):
    srt = tmp_path / "s.srt"
    srt.write_text("1\n00:00:00,200 --> 00:00:01,000\nBonjour\n\n2\n00:00:01,200 --> 00:00:01,800\nAu revoir\n")
    src = tmp_path / "with_subs.mkv"
    with av.open(str(clip)) as video, av.open(str(srt)) as subs, av.open(str(src), "w") as out:
        streams = {("v", s.index): out.add_stream_from_template(s) for s in video.streams}
        text = out.add_stream_from_template(subs.streams[0])
        text.metadata["language"] = "fra"
        for packet in video.demux():
            if packet.dts is not None:
                packet.stream = streams[("v", packet.stream.index)]
                out.mux(packet)
        for packet in subs.demux():
            if packet.dts is not None:
                packet.stream = text
                out.mux(packet)
    convert_file(src, tmp_path / "out.mkv", fast_stylizer, ConvertConfig())
    with av.open(str(tmp_path / "out.mkv")) as made:
        assert [s.type for s in made.streams] == ["video", "audio", "subtitle"]
        assert made.streams.subtitles[0].metadata.get("language") == "fra"
        assert [bytes(p) for p in made.demux(made.streams.subtitles[0]) if p.size] == [b"Bonjour", b"Au revoir"]
    with caplog.at_level("WARNING"):
        convert_file(src, tmp_path / "out.mp4", fast_stylizer, ConvertConfig())  # MP4 takes only mov_text
    assert any("subtitle stream 2 (srt) left out" in r.message for r in caplog.records)
    with av.open(str(tmp_path / "out.mp4")) as made:
        assert [s.type for s in made.streams] == ["video", "audio"]
