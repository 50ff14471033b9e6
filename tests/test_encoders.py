"""Several encoders for one output (`--encoders`): the same file as one encoder makes, chunk by chunk."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from test_interruptions import stream_ends
from test_segments import keyframed_clip, pixels, streams_of, with_subtitles

from rtstyle.config import ConvertConfig
from rtstyle.errors import InputError, PipelineError
from rtstyle.io.video import VideoReader
from rtstyle.jobs.convert import convert_file
from rtstyle.jobs.encoders import chunkable, chunking, encoder_count


def invert(images):
    return [255 - image for image in images]


@pytest.fixture(scope="module")
def film(tmp_path_factory) -> Path:
    """10 s at 24 fps with B-frames, AAC audio, subtitles, chapters and a title: 240 frames, chunks of 96 (4 s)."""
    folder = tmp_path_factory.mktemp("encoders")
    video = keyframed_clip(folder / "video.mp4", seconds=10.0, gop=48)
    chapters = [{"id": n + 1, "start": n * 5000, "end": (n + 1) * 5000, "time_base": Fraction(1, 1000),
                 "metadata": {"title": title}} for n, title in enumerate(["Opening", "Ending"])]
    return with_subtitles(video, folder / "film.mkv", chapters)


def keyframes(path: Path) -> list[int]:
    """Presentation indexes of the keyframes."""
    with av.open(str(path)) as container:
        return [n for n, frame in enumerate(container.decode(video=0)) if frame.key_frame]


def chapters(path: Path) -> list[str]:
    with av.open(str(path)) as container:
        return [chapter["metadata"].get("title") for chapter in container.chapters()]


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_three_encoders_make_the_file_one_makes(film, tmp_path):
    one = convert_file(film, tmp_path / "one.mkv", invert, ConvertConfig(encoders=1))
    three = convert_file(film, tmp_path / "three.mkv", invert, ConvertConfig(encoders=3))
    assert one.frames == three.frames == 240
    # frames, timestamps, audio packets (bytes too), time bases, duration, stream kinds
    assert streams_of(three.output) == streams_of(one.output)
    with av.open(str(three.output)) as made:
        assert [s.type for s in made.streams] == ["video", "audio", "subtitle"]
        assert made.metadata.get("title") == "Le film"
        assert [bytes(p) for p in made.demux(made.streams.subtitles[0]) if p.size] == [b"Bonjour", b"Au revoir"]
    assert chapters(three.output) == chapters(one.output) == ["Opening", "Ending"]
    # a keyframe starts each chunk
    assert {0, 96, 192} <= set(keyframes(three.output))
    # the pictures are the same encoder's work: no frame, at a join or elsewhere, far from one encoder's
    a, b = pixels(one.output), pixels(three.output)
    psnr = [10 * np.log10(255**2 / max(np.mean((x - y) ** 2.0), 1e-9)) for x, y in zip(a, b)]
    assert min(psnr) > 35, psnr
    assert not leftovers(tmp_path)


def test_what_one_encoder_must_write_falls_back(film, tmp_path):
    with VideoReader(film) as reader:
        info = reader.info
    assert chunkable(Path("x.mp4"), info, ConvertConfig()) is None
    assert "one encoder" in chunkable(Path("x.webm"), info, ConvertConfig())
    assert "one encoder" in chunkable(Path("x.mp4"), info, ConvertConfig(codec="h264_nvenc"))
    assert "one encoder" in chunkable(Path("x.gif"), info, ConvertConfig())
    made = convert_file(film, tmp_path / "out.webm", invert, ConvertConfig(encoders=4, copy_audio=False))
    assert made.frames == 240 and keyframes(made.output)[0] == 0


def test_auto_is_one_encoder_off_the_gpu_and_chunks_fit_the_buffer(film):
    assert encoder_count("auto", invert) == 1
    assert encoder_count(5, invert) == 5
    with VideoReader(film) as reader:
        info = reader.info
    assert chunking(info, 3, "rgb24") == (96, 288)  # small frames: the longest chunk, 4 s, one per encoder
    big = info.__class__(**{**info.__dict__, "width": 7680, "height": 4320})
    chunk, buffered = chunking(big, 8, "yuv420p")
    assert chunk == 24 and buffered * 7680 * 4320 * 1.5 <= 1 << 30  # 8K: a second a chunk, the buffer in bounds
    with pytest.raises(InputError):
        ConvertConfig(encoders=0)


def test_a_failing_encoder_stops_the_stream_and_leaves_nothing(film, tmp_path):
    def wrong_size_later(images):
        wrong_size_later.calls += len(images)
        return [image[:-2] if wrong_size_later.calls > 40 else image for image in images]

    wrong_size_later.calls = 0
    with pytest.raises(PipelineError) as caught:
        convert_file(film, tmp_path / "out.mkv", wrong_size_later, ConvertConfig(encoders=3))
    assert "does not match the video" in str(caught.value)
    assert not (tmp_path / "out.mkv").exists() and not leftovers(tmp_path)


def test_interrupted_keeps_a_playable_file_with_audio_cut(tmp_path):
    src = keyframed_clip(tmp_path / "long.mp4", seconds=8.0, gop=48)
    out = tmp_path / "cut.mp4"

    def progress(done: int, total: int) -> None:
        if done == 60:
            os.kill(os.getpid(), signal.SIGINT)

    result = convert_file(src, out, invert, ConvertConfig(encoders=2), progress)
    assert result.interrupted and 60 <= result.frames < 192
    frames, video_end, audio_end, packet = stream_ends(out)
    assert frames == result.frames
    assert abs(audio_end - video_end) <= packet + 1e-3
    assert not leftovers(tmp_path)


def test_cli_encoders_option(tmp_path):
    bad = subprocess.run([sys.executable, "-m", "rtstyle.cli.main", "stylize", "in.mp4", "--encoders", "0"],
                         capture_output=True, text=True, cwd=tmp_path)
    assert bad.returncode == 2 and "--encoders" in bad.stderr and "Traceback" not in bad.stderr


def test_nvenc_takes_the_quality_and_preset_in_its_own_terms():
    """--crf and --preset reach NVENC as constant quality (vbr, cq, no bitrate cap) and its p1-p7 presets;
    the encoder itself needs an NVIDIA card with NVENC, which no machine here has."""
    from rtstyle.io.video import encoder_options

    assert encoder_options("h264_nvenc", 18, "veryfast") == {"rc": "vbr", "cq": "18", "b": "0", "preset": "p3",
                                                             "tune": "hq"}
    assert encoder_options("hevc_nvenc", 23, "slower")["preset"] == "p7"
    assert encoder_options("h264_vaapi", 18, "veryfast") == {}
