"""Stopped early, run twice, killed: the output stays playable, honest about its length, and unmixed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import pytest

from rtstyle.config import ConvertConfig
from rtstyle.errors import OutputError
from rtstyle.io.locks import Writer, claim
from rtstyle.io.synthetic import write_clip
from rtstyle.jobs.convert import LOCK, PARTIAL, convert_file

ROOT = Path(__file__).resolve().parents[1]


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob(".*") if "rtstyle-" in p.name)


def stream_ends(path: Path) -> tuple[int, float, float, float]:
    """(video frames, video end s, audio end s, longest audio packet s) from the packets themselves."""
    with av.open(str(path)) as container:
        video, audio = container.streams.video[0], container.streams.audio[0]
        frames, video_end, audio_end, longest = 0, 0.0, 0.0, 0.0
        for packet in container.demux(video, audio):
            if packet.pts is None or packet.duration is None:
                continue
            end = float((packet.pts + packet.duration) * packet.time_base)
            if packet.stream.type == "video":
                frames += 1
                video_end = max(video_end, end)
            else:
                audio_end = max(audio_end, end)
                longest = max(longest, float(packet.duration * packet.time_base))
    return frames, video_end, audio_end, longest


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory) -> Path:
    """20 s at 24 fps with audio: long enough to stop part-way on 2 cores."""
    return write_clip(tmp_path_factory.mktemp("long") / "long.mp4", seconds=20, width=320, height=180, fps=24)


def start_conversion(src: Path, out: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "rtstyle.cli.main", "stylize", str(src), "-o", str(out),
                             "--device", "cpu", "-q"], stderr=subprocess.PIPE, text=True, env=env)


def wait_for_frames(folder: Path, proc: subprocess.Popen, min_bytes: int = 20_000, timeout: float = 60) -> None:
    """Until the run's temporary file has some frames in it (rather than sleeping a guess)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read()
        if any(p.stat().st_size >= min_bytes for p in folder.glob(f".*{PARTIAL}*")):
            return
        time.sleep(0.1)
    raise AssertionError("the conversion never started writing")


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGHUP, 129), (signal.SIGINT, 130)])
def test_a_signal_finishes_a_playable_file_whose_audio_ends_with_its_video(long_clip, tmp_path, signum, code):
    out = tmp_path / "partial.mp4"
    proc = start_conversion(long_clip, out)
    wait_for_frames(tmp_path, proc)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    assert "interrupted" in err and "Traceback" not in err
    frames, video_end, audio_end, packet = stream_ends(out)
    assert 0 < frames < 480
    assert abs(audio_end - video_end) <= packet + 1e-3, (video_end, audio_end)
    assert not leftovers(tmp_path)


def test_two_runs_with_one_output_do_not_mix(long_clip, tmp_path, fast_stylizer):
    out = tmp_path / "same.mp4"
    first = start_conversion(long_clip, out)
    wait_for_frames(tmp_path, first, min_bytes=1)
    with pytest.raises(OutputError, match=rf"another rtstyle run \(pid {first.pid}\) is writing"):
        convert_file(long_clip, out, fast_stylizer, ConvertConfig())
    first.send_signal(signal.SIGTERM)  # no need to wait for all 480 frames
    _, err = first.communicate(timeout=120)
    assert first.returncode == 143, err
    frames, _, _, _ = stream_ends(out)
    with av.open(str(out)) as container:
        assert sum(1 for _ in container.decode(video=0)) == frames > 0
    assert not leftovers(tmp_path)


def test_files_left_by_a_killed_run_are_removed_by_the_next(clip, tmp_path, fast_stylizer):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a pid that no longer exists
    (tmp_path / f".old.{dead.pid}-abc123{PARTIAL}.mp4").write_bytes(b"half a file")  # no lock: its run is over
    lock = tmp_path / f".out.mp4{LOCK}"
    lock.write_text(json.dumps({**Writer.me("f00d").__dict__, "pid": dead.pid, "started": "1"}))  # this machine's
    with claim(tmp_path / "other.mp4") as token:  # a live writer's temporary file: kept
        alive = tmp_path / f".other.{token}-def456{PARTIAL}.mp4"
        alive.write_bytes(b"in progress")
        result = convert_file(clip, tmp_path / "out.mp4", fast_stylizer, ConvertConfig())
        assert result.frames == 48
        assert leftovers(tmp_path) == sorted([alive.name, f".other.mp4{LOCK}"])


def test_interrupted_in_process_cuts_the_audio_too(long_clip, tmp_path, fast_stylizer):
    out = tmp_path / "cut.mp4"

    def progress(done: int, total: int) -> None:
        if done == 30:
            os.kill(os.getpid(), signal.SIGINT)  # as a user's Ctrl-C, delivered to the main thread

    result = convert_file(long_clip, out, fast_stylizer, ConvertConfig(), progress)
    assert result.interrupted and result.signal == signal.SIGINT
    frames, video_end, audio_end, packet = stream_ends(out)
    assert frames == result.frames < 480
    assert abs(audio_end - video_end) <= packet + 1e-3
