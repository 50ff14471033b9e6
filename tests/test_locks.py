"""Locks and temporary files on shared storage: another machine's live run is never taken for a dead one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rtstyle.config import ConvertConfig
from rtstyle.errors import OutputError
from rtstyle.io import locks
from rtstyle.io.locks import EXPIRES_S, LOCK, PARTIAL, Writer, claim, judge, remove_dead_partials
from rtstyle.jobs.convert import convert_file

ROOT = Path(__file__).resolve().parents[1]


def alive(lock: Path) -> bool:
    verdict, _, held = judge(lock)
    if held is not None:
        os.close(held)  # judge holds a dead lock's flock for its caller to remove it
    return verdict


def foreign_writer(folder: Path, output: str, age_s: float = 0.0, **changes) -> tuple[Path, Path]:
    """A lock and a half-written temporary file as a run on another host leaves them (no flock reaches here:
    the file system may not pass it on), the lease last renewed `age_s` ago. -> (lock, partial)."""
    fields = {"host": "render-node-7", "boot": "5b3f0c1e-other-boot", "pidns": "pid:[4026531836]", "pid": 1,
              "started": "123", "token": "c0ffee00beef", **changes}
    lock = folder / f".{output}{LOCK}"
    lock.write_text(json.dumps(fields))
    stem, suffix = os.path.splitext(output)
    partial = folder / f".{stem}.{fields['token']}-a1b2c3{PARTIAL}{suffix}"
    partial.write_bytes(b"frames still being written")
    if age_s:
        then = time.time() - age_s
        for path in (lock, partial):
            os.utime(path, (then, then))
    return lock, partial


def test_another_hosts_live_run_keeps_its_files(tmp_path, clip, fast_stylizer):
    lock, partial = foreign_writer(tmp_path, "shared.mp4", age_s=5)
    assert alive(lock)
    remove_dead_partials(tmp_path, force=True)
    # A conversion of another output in the same folder sweeps it too, and leaves them alone.
    assert convert_file(clip, tmp_path / "mine.mp4", fast_stylizer, ConvertConfig()).frames == 48
    assert lock.exists() and partial.exists()
    with pytest.raises(OutputError, match=r"another rtstyle run \(pid 1\) is writing .*shared.mp4 on render-node-7"):
        convert_file(clip, tmp_path / "shared.mp4", fast_stylizer, ConvertConfig())
    assert lock.exists() and partial.exists() and not (tmp_path / "shared.mp4").exists()


def test_an_expired_lease_is_taken_over_and_its_files_cleaned(tmp_path, clip, fast_stylizer):
    lock, partial = foreign_writer(tmp_path, "shared.mp4", age_s=EXPIRES_S + 30)
    assert not alive(lock)
    assert convert_file(clip, tmp_path / "shared.mp4", fast_stylizer, ConvertConfig()).frames == 48
    assert not lock.exists() and not partial.exists()


def test_a_lease_short_of_expiry_by_seconds_still_holds(tmp_path):
    lock, partial = foreign_writer(tmp_path, "a.mp4", age_s=EXPIRES_S - 20)
    remove_dead_partials(tmp_path, force=True)
    assert alive(lock) and partial.exists()


def test_this_machines_dead_pid_and_a_reused_pid_are_dead_at_once(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    me = Writer.me("x").__dict__
    gone, gone_partial = foreign_writer(tmp_path, "gone.mp4", **{**me, "pid": dead.pid, "token": "aaaa"})
    # This test's own pid, as though a run that started at another time had had it: pid reuse.
    reused, reused_partial = foreign_writer(tmp_path, "reused.mp4", **{**me, "started": "1", "token": "bbbb"})
    live, alive_partial = foreign_writer(tmp_path, "alive.mp4", **{**me, "token": "cccc"})
    remove_dead_partials(tmp_path, force=True)
    assert not alive(gone) and not alive(reused) and alive(live)  # all with a fresh lease
    assert not gone_partial.exists() and not reused_partial.exists() and alive_partial.exists()


def test_a_stale_partial_beside_a_live_claim_of_the_same_output_goes(tmp_path):
    with claim(tmp_path / "a.mp4") as token:
        mine = tmp_path / f".a.{token}-000000{PARTIAL}.mp4"
        mine.write_bytes(b"mine")
        older = tmp_path / f".a.deadbeef0000-111111{PARTIAL}.mp4"  # an earlier claim's, long over
        older.write_bytes(b"left by a killed run")
        remove_dead_partials(tmp_path, force=True)
        assert mine.exists() and not older.exists()


def test_the_file_systems_lock_outranks_an_expired_lease(tmp_path):
    """A writer in another process holds flock: its lock is alive even if its lease looks long expired."""
    out = tmp_path / "held.mp4"
    code = ("import sys, time\nfrom pathlib import Path\nfrom rtstyle.io.locks import claim\n"
            f"with claim(Path({str(out)!r})):\n    print('held', flush=True)\n    time.sleep(60)\n")
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert holder.stdout.readline().strip() == "held"
        lock = tmp_path / f".held.mp4{LOCK}"
        fields = json.loads(lock.read_text())
        assert fields["pid"] == holder.pid and fields["boot"] and fields["started"]
        lock.write_text(json.dumps({**fields, "host": "elsewhere", "boot": "other"}))  # as if from another host
        then = time.time() - 10 * EXPIRES_S
        os.utime(lock, (then, then))
        assert alive(lock)
        with pytest.raises(OutputError, match="another rtstyle run"):
            with claim(out):
                pass
        assert lock.exists()
    finally:
        holder.kill()
        holder.wait()
    # Killed: the kernel dropped its flock, and on this machine its pid is gone.
    lock.write_text(json.dumps(fields))
    assert not alive(lock)
    with claim(out):
        assert json.loads(lock.read_text())["pid"] == os.getpid()
    assert not lock.exists()


def test_the_writer_renews_its_lease(tmp_path, monkeypatch):
    monkeypatch.setattr(locks, "RENEW_S", 0.05)
    with claim(tmp_path / "a.mp4"):
        locks._wake.set()  # the renewing thread may be in a wait of the usual RENEW_S: start the short ones
        lock = tmp_path / f".a.mp4{LOCK}"
        then = time.time() - 10 * EXPIRES_S
        os.utime(lock, (then, then))
        deadline = time.monotonic() + 10
        while lock.stat().st_mtime < then + 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert time.time() - lock.stat().st_mtime < EXPIRES_S / 2
