"""Batches that meet bad files, full disks, odd folders, resumes, Ctrl-C and many files: nothing dropped unsaid."""

from __future__ import annotations

import cProfile
import errno
import json
import logging
import os
import pstats
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from rtstyle.cli.main import main
from rtstyle.config import ConvertConfig
from rtstyle.io.locks import PARTIAL
from rtstyle.io.synthetic import write_clip
from rtstyle.jobs import batch as batch_module
from rtstyle.jobs.batch import Job, expand, is_complete, run_batch

ROOT = Path(__file__).resolve().parents[1]


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main(["stylize", *map(str, argv), "--model", "fast", "--device", "cpu"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def statuses(summary: dict, root: Path) -> dict[str, str]:
    return {Path(r["source"]).relative_to(root).as_posix(): r["status"] for r in summary["files"]}


def photo(path: Path, size=(64, 48), seed=0) -> Path:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return path


def png_claiming(path: Path, width: int, height: int) -> Path:
    """A small PNG whose header claims `width` x `height`: over Pillow's pixel limit, yet a few bytes."""
    photo(path, (8, 8))
    data = bytearray(path.read_bytes())
    ihdr = 8 + 4  # after the signature and the chunk's length
    data[ihdr + 4: ihdr + 12] = struct.pack(">II", width, height)
    data[ihdr + 17: ihdr + 21] = struct.pack(">I", zlib.crc32(bytes(data[ihdr: ihdr + 17])))
    path.write_bytes(bytes(data))
    return path


def test_a_picture_over_pillows_pixel_limit_is_one_line_and_the_batch_goes_on(tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    photo(src / "a.png")
    png_claiming(src / "b_huge.png", 30_000, 20_000)  # 600 MP: Pillow refuses it as a decompression bomb
    write_clip(src / "c.mp4", seconds=0.5, width=96, height=64, fps=12)
    code, out, err = run(capsys, src, "-o", f"{tmp_path / 'out'}/", "--json")
    summary = json.loads(out)
    assert code == 1 and statuses(summary, src) == {"a.png": "done", "b_huge.png": "failed", "c.mp4": "done"}
    error = next(r["error"] for r in summary["files"] if r["status"] == "failed")
    assert "b_huge.png" in error and "pixels" in error and "\n" not in error
    code, out, err = run(capsys, src, "-o", f"{tmp_path / 'out'}/", "-y")
    failures = [line for line in err.splitlines() if line.startswith("rtstyle: failed:")]
    assert code == 1 and len(failures) == 1 and "internal error" not in err
    assert out.strip() == "2 done, 0 skipped, 1 failed"


def test_a_full_disk_when_closing_a_file_stops_the_batch_and_still_reports(tmp_path, capsys, monkeypatch):
    from rtstyle.io import video

    src = tmp_path / "in"
    src.mkdir()
    for name in ("a.mp4", "b.mp4"):
        write_clip(src / name, seconds=0.5, width=96, height=64, fps=12)
    photo(src / "c.png")
    real_close = video.VideoWriter.close

    def close_on_a_full_disk(self):  # the muxer's last write (the MP4 index) is where a full disk shows
        real_close(self)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(video.VideoWriter, "close", close_on_a_full_disk)
    out = tmp_path / "out"
    code, printed, err = run(capsys, src, "-o", f"{out}/", "--json")
    summary = json.loads(printed)
    assert code == 1 and "internal error" not in err
    assert statuses(summary, src) == {"a.mp4": "failed", "b.mp4": "not tried", "c.png": "not tried"}
    assert "no space left" in summary["files"][0]["error"] and "disk is full" in summary["stopped"]
    assert summary["failed"] == 1 and summary["not_tried"] == 2
    assert not [p for p in out.rglob("*") if p.is_file()]  # the unfinished file is not left taking space
    code, printed, err = run(capsys, src, "-o", f"{out}/")
    assert code == 1 and printed.strip().startswith("0 done, 0 skipped, 1 failed, 2 not tried; stopped: the disk")


def test_the_output_folder_inside_the_input_folder_is_not_an_input(tmp_path, capsys):
    src = tmp_path / "footage"
    src.mkdir()
    write_clip(src / "a.mp4", seconds=0.5, width=96, height=64, fps=12)
    for _ in range(2):
        code, out, _ = run(capsys, src, "-o", f"{src / 'styled'}/", "--json", "--skip-existing")
        assert code == 0 and list(statuses(json.loads(out), src)) == ["a.mp4"]
    assert not (src / "styled" / "styled").exists()
    # Found through a glob, too.
    assert [job.source.name for job in expand([f"{src}/**/*.mp4"], src / "styled")] == ["a.mp4"]


def test_symlinked_subfolders_are_followed_and_loops_said(tmp_path, caplog):
    src, elsewhere = tmp_path / "in", tmp_path / "elsewhere"
    (src / "real").mkdir(parents=True)
    elsewhere.mkdir()
    photo(src / "real" / "a.png")
    photo(elsewhere / "b.png")
    (src / "linked").symlink_to(elsewhere, target_is_directory=True)
    (src / "real" / "back").symlink_to(src, target_is_directory=True)  # a loop
    (src / "gone").symlink_to(tmp_path / "nothing", target_is_directory=True)  # broken
    with caplog.at_level(logging.WARNING):
        jobs = expand([str(src)], tmp_path / "out")
    assert sorted(j.output.relative_to(tmp_path / "out").as_posix() for j in jobs) == ["linked/b.png", "real/a.png"]
    said = caplog.text
    assert "real/back links to a folder already searched" in said and "gone: a broken link; skipped" in said


def test_an_output_folder_that_cannot_be_made_is_one_line(tmp_path, capsys):
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    photo(src / "a.png")
    photo(src / "sub" / "b.png")
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "nowhere")
    for target, message in ((f"{blocker}/", "a file of that name is in the way"),
                            (f"{dangling}/", "a link to nowhere is in the way"),
                            (f"{blocker}/deeper/", "Not a directory"), ("/proc/rtstyle-out/", "cannot make")):
        code, out, err = run(capsys, src, "-o", target)
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1 and "internal" not in err, err
    # A subfolder of the output that a file blocks fails its files alone.
    out = tmp_path / "out"
    out.mkdir()
    (out / "sub").write_text("in the way")
    code, printed, err = run(capsys, src, "-o", f"{out}/", "--json")
    assert code == 1 and statuses(json.loads(printed), src) == {"a.png": "done", "sub/b.png": "failed"}


def test_skip_existing_checks_pictures_and_gifs_as_it_checks_videos(tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    photo(src / "p.png", (96, 64))
    photo(src / "j.jpg", (96, 64), seed=1)
    write_clip(src / "fast.mp4", seconds=1.0, width=96, height=64, fps=30)  # above the 15 fps a GIF keeps
    out = tmp_path / "out"
    inputs = [src / "p.png", src / "j.jpg"]
    assert run(capsys, *inputs, "-o", f"{out}/", "-q")[0] == 0
    gif_job = Job(src / "fast.mp4", out / "fast.gif")
    assert run(capsys, src / "fast.mp4", "-o", gif_job.output, "-q")[0] == 0
    with Image.open(gif_job.output) as made:
        assert made.n_frames < 30  # frames were dropped to GIF's rate...
    assert is_complete(gif_job)  # ...and it is complete all the same
    for name in ("p.png", "j.jpg"):
        assert is_complete(Job(src / name, out / name))
        data = (out / name).read_bytes()
        (out / name).write_bytes(data[: len(data) * 2 // 3])  # cut short: the header still opens
        assert not is_complete(Job(src / name, out / name))
    code, printed, _ = run(capsys, *inputs, "-o", f"{out}/", "--skip-existing", "--json")
    assert code == 0 and set(statuses(json.loads(printed), src).values()) == {"done"}
    data = gif_job.output.read_bytes()
    gif_job.output.write_bytes(data[: len(data) // 2])
    assert not is_complete(gif_job)


def test_skip_existing_checks_every_frame_of_an_animation_and_big_pictures_quietly(tmp_path):
    import warnings

    frames = [Image.fromarray(np.full((32, 48, 3), 40 * n, np.uint8)) for n in range(6)]
    src, made = tmp_path / "in.png", tmp_path / "out.png"
    frames[0].save(src, save_all=True, append_images=frames[1:], duration=80)
    job = Job(src, made)
    frames[0].save(made, save_all=True, append_images=frames[1:], duration=80)
    assert is_complete(job)
    frames[0].save(made, save_all=True, append_images=frames[1:3], duration=80)  # whole, but 3 of 6 frames
    assert not is_complete(job)
    frames[0].save(made, save_all=True, append_images=frames[1:], duration=80)
    data = made.read_bytes()
    made.write_bytes(data[: len(data) // 3])  # cut in its third frame: the first still decodes
    assert not is_complete(job)
    # A finished picture above Pillow's limit but within rtstyle's: complete, and no two-line warning.
    big = Job(photo(tmp_path / "still.png"), tmp_path / "big.png")
    Image.new("L", (10_000, 9_000)).save(big.output)
    Image.MAX_IMAGE_PIXELS = 89_478_485  # Pillow's own, as in a process that opened no picture yet
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert is_complete(big)
    assert not [w for w in caught if "Decompression" in w.category.__name__]


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_in_a_batch_counts_what_happened_and_names_the_partial_file(tmp_path, stop):
    src = tmp_path / "in"
    src.mkdir()
    photo(src / "a.png")
    write_clip(src / "b.mp4", seconds=20, width=320, height=180, fps=24)
    photo(src / "c.png", seed=2)  # never started: listed as not tried
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "rtstyle.cli.main", "stylize", str(src), "-o", f"{out}/",
                             "--model", "fast", "--device", "cpu", "-q"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 120
    while not any(p.stat().st_size > 20_000 for p in out.glob(f".*{PARTIAL}*")) if out.exists() else True:
        assert time.monotonic() < deadline and proc.poll() is None, "the batch never started writing b.mp4"
        time.sleep(0.1)
    proc.send_signal(stop)
    printed, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + stop, err  # as a single file's conversion says which signal stopped it
    assert printed.strip() == "1 done, 0 skipped, 0 failed, 1 interrupted, 1 not tried"
    kept = [line for line in err.splitlines() if "holds the first" in line]
    assert len(kept) == 1 and str(out / "b.mp4") in kept[0] and "--skip-existing redoes it" in kept[0]
    frames = int(kept[0].split("holds the first ")[1].split()[0])
    with av.open(str(out / "b.mp4")) as container:
        assert sum(1 for _ in container.decode(video=0)) == frames > 0


def calls_for(tmp_path: Path, count: int) -> int:
    """Python function calls a batch of `count` files that each fail at once makes (a count: no clock)."""
    folder = tmp_path / f"n{count}"
    folder.mkdir()
    for i in range(count):
        (folder / f"clip{i:05d}.mp4").write_bytes(b"")  # fails as it is opened
    jobs = expand([str(folder)], tmp_path / f"out{count}")
    profile = cProfile.Profile()
    profile.enable()
    result = run_batch(expand([str(folder)], tmp_path / f"out{count}"), lambda frames: frames, ConvertConfig())
    profile.disable()
    assert len(jobs) == count and result.counts()["failed"] == count
    return sum(stat[1] for stat in pstats.Stats(profile).stats.values())  # (cc, nc, tt, ct, callers): nc


@pytest.mark.parametrize("small", [300])
def test_the_cost_of_a_batch_grows_with_the_number_of_files_not_its_square(tmp_path, small, monkeypatch):
    monkeypatch.setattr(batch_module.log, "debug", lambda *a, **k: None)
    few, many = calls_for(tmp_path, small), calls_for(tmp_path, 4 * small)
    # Linear: 4x the files, 4x the calls (plus a little). Quadratic work would give about 16x.
    assert many / few < 4.6, (few, many)


def test_a_really_full_disk_stops_the_batch(tmp_path):
    """The same on a real 200 KB file system (a tmpfs in a user and mount namespace of its own, where the
    machine allows one): the second file fills it."""
    import shutil

    if not shutil.which("unshare") or subprocess.run(["unshare", "-rm", "true"], capture_output=True).returncode:
        pytest.skip("no user and mount namespaces here for a small file system")
    src, mount = tmp_path / "in", tmp_path / "small"
    src.mkdir()
    mount.mkdir()
    for name in ("a.mp4", "b.mp4", "c.mp4"):
        write_clip(src / name, seconds=2, width=320, height=180, fps=24)  # about 140 KB stylized
    script = (f"mount -t tmpfs -o size=200k tmpfs {mount} && {sys.executable} -m rtstyle.cli.main stylize {src} "
              f"-o {mount}/out/ --model fast --device cpu --json; code=$?; ls -A {mount}/out; exit $code")
    done = subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 1, done.stderr
    printed, _, listing = done.stdout.rpartition("}")
    summary = json.loads(printed + "}")
    assert statuses(summary, src) == {"a.mp4": "done", "b.mp4": "failed", "c.mp4": "not tried"}
    assert "no space left" in summary["files"][1]["error"] and summary["stopped"]
    assert PARTIAL not in summary["files"][1]["error"]  # named as the output, not as its temporary file
    assert listing.split() == ["a.mp4"]  # the file that did not fit is not left taking the space


def test_a_picture_that_cannot_be_written_is_named_as_its_output(tmp_path):
    from rtstyle.errors import OutputError
    from rtstyle.io.images import write_image
    from rtstyle.io.locks import temporary_name

    dst = tmp_path / "gone" / "out.png"  # its folder is not there: the save fails
    with pytest.raises(OutputError) as caught:
        write_image(temporary_name(dst), np.zeros((8, 8, 3), np.uint8))
    assert str(dst) in str(caught.value) and PARTIAL not in str(caught.value)


def test_json_is_printed_when_a_batch_cannot_start(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    code, printed, err = run(capsys, empty, "-o", f"{tmp_path / 'out'}/", "--json")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert json.loads(printed) == {"error": "no video or image files in the inputs", "exit_code": 2}
