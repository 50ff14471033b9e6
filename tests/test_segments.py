"""One long video in segments: split at keyframes, pre-roll for the smoother, joined without re-encoding."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from rtstyle.cli.main import main
from rtstyle.config import ConvertConfig, EngineConfig
from rtstyle.io.synthetic import scene_frame, write_clip
from rtstyle.jobs.convert import convert_file
from rtstyle.jobs.segments import convert_segmented, plan_segments, preroll_frames

GOP = 12  # a keyframe every half second at 24 fps


def keyframed_clip(path: Path, seconds: float = 3.0, gop: int = GOP, rotation: int = 0,
                   timescale: int | None = None) -> Path:
    """The synthetic scene with its AAC tone, re-encoded with a keyframe every `gop` frames (and B-frames);
    `timescale`: the MP4 video time base's denominator (phones write 600)."""
    raw = write_clip(path.with_name(f"raw-{path.name}"), seconds=seconds, width=160, height=96, fps=24)
    options = {"video_track_timescale": str(timescale)} if timescale else {}
    with av.open(str(raw)) as source, av.open(str(path), "w", options=options) as out:
        video = out.add_stream("libx264", rate=24)
        video.width, video.height, video.pix_fmt = 160, 96, "yuv420p"
        video.options = {"preset": "veryfast", "g": str(gop), "keyint_min": str(gop), "sc_threshold": "0"}
        if rotation:
            video.set_display_rotation(rotation)
        audio = out.add_stream_from_template(source.streams.audio[0])
        for packet in source.demux():
            if packet.stream.type == "audio":
                if packet.size:
                    packet.stream = audio
                    out.mux(packet)
            else:  # the empty packet at the end flushes the decoder's last frames
                for frame in packet.decode():
                    frame.pict_type = 0  # let the encoder choose (the source's types would force its keyframes)
                    out.mux(video.encode(frame))
        out.mux(video.encode(None))
    return path


def streams_of(path: Path) -> dict:
    """What must match a single-process run: frame timestamps, audio packets, time bases, duration."""
    with av.open(str(path)) as container:
        frames = [frame.pts for frame in container.decode(video=0)]
    with av.open(str(path)) as container:
        audio = [(p.pts, bytes(p)) for p in container.demux(audio=0) if p.size]
        return {"frames": frames, "audio": audio, "duration": container.duration,
                "time_bases": [s.time_base for s in container.streams],
                "kinds": [s.type for s in container.streams]}


def pixels(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24").astype(np.int16) for f in container.decode(video=0)]


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory) -> Path:
    return keyframed_clip(tmp_path_factory.mktemp("segments") / "long.mp4")


@pytest.fixture(scope="module")
def stylizer():
    from rtstyle.api import load_stylizer
    from rtstyle.model.styles import StyleChoice

    return load_stylizer("fast", StyleChoice(), EngineConfig(device="cpu"))


def test_segments_start_at_keyframes_and_their_preroll_reaches_back(long_clip):
    plan = plan_segments(long_clip, 1.0, preroll=5)
    assert [(s.first, s.stop, s.preroll) for s in plan] == [(0, 24, 0), (24, 48, 5), (48, 72, 5)]
    tick = 512  # 1/24 s in the clip's 1/12288 time base
    second = plan[1]
    assert (second.start_pts, second.first_pts, second.stop_pts) == (19 * tick, 24 * tick, 48 * tick)
    assert second.seek[0] == 12 * tick  # the keyframe before the pre-roll's first frame
    assert plan[0].seek is None and plan[-1].stop_pts is None
    assert [s.first for s in plan_segments(long_clip, 0.7)] == [0, 24, 48]  # 0.5 s is short of 0.7: the next one
    assert preroll_frames("none", 0.7) == 0 and 0.7 ** preroll_frames("ema", 0.7) < 1 / 255


def test_segmented_run_equals_a_single_run(long_clip, stylizer, tmp_path):
    # Lossless encoding, so the frames themselves can be compared, not only their count and timestamps.
    config = ConvertConfig(smooth="ema", crf=0)
    single = convert_file(long_clip, tmp_path / "single.mp4", stylizer, config)
    joined = convert_segmented(long_clip, tmp_path / "joined.mp4", stylizer, config, seconds=1.0)
    assert single.frames == joined.frames == 72
    assert streams_of(joined.output) == streams_of(single.output)  # timestamps, audio, time bases, duration
    reference = pixels(single.output)

    def differences(path: Path) -> list[float]:
        return [float(np.abs(a - b).mean()) for a, b in zip(reference, pixels(path))]

    # The warmed smoother: at most a few hundredths of a level from the single run at any frame (the
    # cold start's weight after the pre-roll, 0.7 ** 16); with no smoothing the frames are the same.
    assert max(differences(joined.output)) < 0.1
    # Without the pre-roll the smoother starts cold at each join, and it shows there.
    cold = convert_segmented(long_clip, tmp_path / "cold.mp4", stylizer, config, seconds=1.0, preroll=0)
    cold = differences(cold.output)
    assert cold[24] > 1 and cold[48] > 1 and max(cold[:24]) == 0
    assert not list(tmp_path.glob(".*"))  # parts and temporary files are gone


def test_segment_seconds_on_the_command_line(long_clip, tmp_path, capsys):
    code = main(["stylize", str(long_clip), "-o", str(tmp_path / "out.mkv"), "--model", "fast",
                 "--segment-seconds", "1", "--json"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["frames"] == 72
    assert [p for p in streams_of(tmp_path / "out.mkv")["kinds"]] == ["video", "audio"]
    code = main(["stylize", str(long_clip), "-o", str(tmp_path / "out.gif"), "--segment-seconds", "1"])
    assert code == 2 and "--segment-seconds cannot join .gif" in capsys.readouterr().err
    code = main(["stylize", str(long_clip), str(long_clip), "-o", f"{tmp_path}/many/", "--segment-seconds", "1"])
    assert code == 2 and "give one input file" in capsys.readouterr().err


def test_a_phone_video_turned_with_a_coarse_time_base(tmp_path, stylizer):
    """A 1/600 time base (the pieces' MP4 muxer makes it 1/19200) and a display matrix of 90 degrees."""
    clip = keyframed_clip(tmp_path / "phone.mp4", seconds=1.0, rotation=90, timescale=600)
    with av.open(str(clip)) as container:
        assert container.streams.video[0].time_base == Fraction(1, 600)
    single = convert_file(clip, tmp_path / "single.mp4", stylizer, ConvertConfig())
    joined = convert_segmented(clip, tmp_path / "joined.mp4", stylizer, ConvertConfig(), seconds=0.5)
    assert (joined.frames, joined.width, joined.height) == (24, 96, 160)
    assert streams_of(joined.output) == streams_of(single.output)
    with av.open(str(joined.output)) as container:
        frame = next(container.decode(video=0))
        assert (frame.width, frame.height) == (96, 160)  # stored upright: the rotation was applied once


def with_subtitles(clip: Path, dst: Path, chapters: list | None = None) -> Path:
    """`clip` in Matroska with two French subtitles (from 0.2 s and 2.2 s), a title and `chapters`."""
    srt = dst.with_suffix(".srt")
    srt.write_text("1\n00:00:00,200 --> 00:00:01,000\nBonjour\n\n2\n00:00:02,200 --> 00:00:02,800\nAu revoir\n")
    with av.open(str(clip)) as video, av.open(str(srt)) as subs, av.open(str(dst), "w") as out:
        out.metadata["title"] = "Le film"
        if chapters:
            out.set_chapters(chapters)
        streams = {s.index: out.add_stream_from_template(s) for s in video.streams}
        text = out.add_stream_from_template(subs.streams[0])
        text.metadata["language"] = "fra"
        for packet in video.demux():
            if packet.size:
                packet.stream = streams[packet.stream.index]
                out.mux(packet)
        for packet in subs.demux():
            if packet.size:
                packet.stream = text
                out.mux(packet)
    return dst


def test_subtitles_and_metadata_come_once_from_the_source(long_clip, stylizer, tmp_path):
    src = with_subtitles(long_clip, tmp_path / "with_subs.mkv")
    single = convert_file(src, tmp_path / "single.mkv", stylizer, ConvertConfig())
    joined = convert_segmented(src, tmp_path / "joined.mkv", stylizer, ConvertConfig(), seconds=1.0)
    assert streams_of(joined.output) == streams_of(single.output)
    with av.open(str(joined.output)) as made:
        assert [s.type for s in made.streams] == ["video", "audio", "subtitle"]
        assert made.metadata.get("title") == "Le film"
        assert made.streams.subtitles[0].metadata.get("language") == "fra"
        assert [bytes(p) for p in made.demux(made.streams.subtitles[0]) if p.size] == [b"Bonjour", b"Au revoir"]


def edited_clip(path: Path, codec: str, options: dict[str, str], shots: int = 3, shot_frames: int = 35,
                fps: int = 24) -> Path:
    """Shots of the scene with hard cuts between them (every other one turned and inverted) and an AAC tone,
    encoded by `codec` with `options` on top of its defaults. 35 frames at 24 fps is 1.458 s, no whole number
    of milliseconds: a timestamp rounded anywhere shows."""
    width, height = 160, 96
    tone = write_clip(path.with_name(f"tone-{path.name}"), seconds=shots * shot_frames / fps, width=32, height=32,
                      fps=fps)
    with av.open(str(tone)) as source, av.open(str(path), "w") as out:
        video = out.add_stream(codec, rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.options = options
        audio = out.add_stream_from_template(source.streams.audio[0])
        for packet in source.demux(source.streams.audio[0]):
            if packet.size:
                packet.stream = audio
                out.mux(packet)
        for index in range(shots * shot_frames):
            image = scene_frame(index, width, height, fps)
            if index // shot_frames % 2:
                image = np.ascontiguousarray(255 - image[::-1])
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = index, Fraction(1, fps)
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
    return path


def leading_frames(path: Path) -> int:
    """Frames decoded after a keyframe (other than the first) but shown before it: an open GOP's."""
    with av.open(str(path)) as container:
        packets = [(p.pts, p.is_keyframe) for p in container.demux(video=0) if p.size]
    return sum(1 for i, (key, is_key) in enumerate(packets) if is_key and i
               for later, _ in packets[i + 1:i + 8] if later < key)


QUIET_X265 = {"x265-params": "log-level=error"}


@pytest.mark.parametrize("name, codec, options, open_gop", [
    ("x264-defaults.mp4", "libx264", {}, False),  # preset medium: 3 B-frames, B-pyramid, keyframes at the cuts
    ("x265-defaults.mkv", "libx265", QUIET_X265, False),
    ("x264-open-gop.mp4", "libx264", {"g": "24", "x264-params": "open-gop=1"}, True),
    ("x265-keyint.mp4", "libx265", {"g": "24", **QUIET_X265}, True),  # x265's GOPs are open by default
])
def test_segments_of_what_encoders_make_by_default(name, codec, options, open_gop, stylizer, tmp_path):
    """B-frames, B-pyramids, open GOPs, HEVC: the segments are cut by timestamp, decoded from their keyframe,
    and the join has the single run's frames, timestamps and audio."""
    clip = edited_clip(tmp_path / name, codec, options)
    assert (leading_frames(clip) > 0) == open_gop
    plan = plan_segments(clip, 1.0)
    assert len(plan) >= 3 and all(s.frames > 0 for s in plan)
    for smooth in ("none", "ema"):
        config = ConvertConfig(smooth=smooth, crf=0)
        single = convert_file(clip, tmp_path / f"single-{smooth}{clip.suffix}", stylizer, config)
        joined = convert_segmented(clip, tmp_path / f"joined-{smooth}{clip.suffix}", stylizer, config, seconds=1.0)
        assert single.frames == joined.frames == 105
        assert streams_of(joined.output) == streams_of(single.output)
        errors = [float(np.abs(a - b).mean()) for a, b in zip(pixels(single.output), pixels(joined.output))]
        assert max(errors) == 0 if smooth == "none" else max(errors) < 0.1
