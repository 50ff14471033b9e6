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
from rtstyle.io.synthetic import write_clip
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
    assert second.seek_pts == 12 * tick  # the keyframe before the pre-roll's first frame
    assert second.cut_pts == 60 * tick  # one keyframe past its end
    assert plan[-1].stop_pts is None and plan[-1].cut_pts is None
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


def test_subtitles_and_metadata_come_once_from_the_source(long_clip, stylizer, tmp_path):
    srt = tmp_path / "s.srt"
    srt.write_text("1\n00:00:00,200 --> 00:00:01,000\nBonjour\n\n2\n00:00:02,200 --> 00:00:02,800\nAu revoir\n")
    src = tmp_path / "with_subs.mkv"
    with av.open(str(long_clip)) as video, av.open(str(srt)) as subs, av.open(str(src), "w") as out:
        out.metadata["title"] = "Le film"
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
    single = convert_file(src, tmp_path / "single.mkv", stylizer, ConvertConfig())
    joined = convert_segmented(src, tmp_path / "joined.mkv", stylizer, ConvertConfig(), seconds=1.0)
    assert streams_of(joined.output) == streams_of(single.output)
    with av.open(str(joined.output)) as made:
        assert [s.type for s in made.streams] == ["video", "audio", "subtitle"]
        assert made.metadata.get("title") == "Le film"
        assert made.streams.subtitles[0].metadata.get("language") == "fra"
        assert [bytes(p) for p in made.demux(made.streams.subtitles[0]) if p.size] == [b"Bonjour", b"Au revoir"]
