"""Batches and long videos on a local Ray (2 CPUs): a broken file, a resumed batch, a worker killed mid-file,
segments joined into what a single run makes."""

from __future__ import annotations

import json
import logging
import os
import re
import time
from pathlib import Path

import pytest

from rtstyle.cli.main import main
from rtstyle.config import ConvertConfig, EngineConfig
from rtstyle.errors import BackendError
from rtstyle.io.synthetic import write_clip
from rtstyle.jobs import cluster
from rtstyle.jobs.batch import expand, is_complete
from rtstyle.jobs.convert import LOCK, PARTIAL
from rtstyle.model.styles import StyleChoice

ray = pytest.importorskip("ray", reason="Ray is in the 'cluster' extra")


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    """One local Ray for the module: rtstyle uses the one this process has rather than starting its own.

    Started as the CLI starts it for --json (nothing from the workers on stdout, which is the JSON's).
    """
    # The workers can import this module (HeldWorker below is made in them).
    path = os.pathsep.join(filter(None, [str(Path(__file__).parent), os.environ.get("PYTHONPATH")]))
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": path}})
    yield
    ray.shutdown()


def json_in(out: str) -> list[dict]:
    """The JSON documents printed, one per command. Ray prints its "task will be retried" notes on stdout from a
    thread of its own; the CLI sends them to stderr while it runs Ray, but those about an earlier test's workers
    can arrive in between (the Ray of this module outlives each command)."""
    starts = [m.start() for m in re.finditer(r"^\{", out, re.MULTILINE)]
    decoder = json.JSONDecoder()
    return [decoder.raw_decode(out, start)[0] for start in starts]


def ray_batch(capsys, *argv) -> tuple[int, dict]:
    # --ray first: it takes the folder after it for its address, and the command gives it back to the inputs
    code = main(["stylize", "--ray", *map(str, argv), "--model", "fast", "--json"])
    return code, json_in(capsys.readouterr().out)[-1]


def statuses(summary: dict, root: Path) -> dict:
    return {r["source"].removeprefix(str(root) + "/"): r["status"] for r in summary["files"]}


def test_a_batch_on_ray_with_a_broken_file(tree, tmp_path, capsys):
    out = tmp_path / "out"
    code, summary = ray_batch(capsys, tree, "-o", f"{out}/")
    assert code == 1  # one failed, the others done
    assert statuses(summary, tree) == {"a.mp4": "done", "sub/b.mp4": "done", "sub/photo.png": "done",
                                       "sub/broken.mp4": "failed"}
    failed = next(r for r in summary["files"] if r["status"] == "failed")
    assert "not a video or image file" in failed["error"] and failed["attempts"] == 1  # no retry for bad input
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == [
        "a.mp4", "sub/b.mp4", "sub/photo.png"]
    assert all(r["frames"] == 24 for r in summary["files"] if r["source"].endswith(("a.mp4", "b.mp4")))


def test_an_interrupted_batch_resumes(tree, tmp_path, capsys):
    for name in "cdef":
        write_clip(tree / f"{name}.mp4", seconds=1.0, width=160, height=96, fps=24)
    out = tmp_path / "out"
    jobs = expand([str(tree)], out)

    def ctrl_c_once_a_file_is_done(done: int, total: int) -> None:
        if any(job.output.exists() for job in jobs):
            raise KeyboardInterrupt

    first = cluster.run_ray_batch(jobs, "fast", StyleChoice(), EngineConfig(device="cpu"), ConvertConfig(),
                                  cluster.RayConfig(), progress=ctrl_c_once_a_file_is_done)
    assert first.interrupted and len(first.results) == len(jobs)  # every file listed, those never started too
    finished = {Path(r.source).relative_to(tree).as_posix() for r in first.results if r.status == "done"}
    assert len(finished) < len(jobs) - 1  # (the file whose output stopped it may not be reported yet)
    (out / "sub").mkdir(exist_ok=True)
    (out / "sub" / "b.mp4").write_bytes((tree / "sub" / "b.mp4").read_bytes()[:3000])  # as if cut short
    code, summary = ray_batch(capsys, tree, "-o", f"{out}/", "--skip-existing")
    assert code == 1
    again = statuses(summary, tree)
    # What was reported done is skipped; what Ctrl-C cut off is done now. (A file that a worker finished as
    # Ctrl-C came is complete without having been reported: skipped too.)
    assert finished - {"sub/b.mp4"} <= {name for name, status in again.items() if status == "skipped"}
    assert sum(status == "done" for name, status in again.items() if name != "sub/b.mp4") >= 1
    assert "skipped" in again.values()  # at least the file whose output was there when Ctrl-C came
    assert again["sub/b.mp4"] == "done" and again["sub/broken.mp4"] == "failed"
    assert set(again.values()) == {"done", "skipped", "failed"}
    assert all(is_complete(job) for job in jobs if job.source.name != "broken.mp4")
    # What the killed workers left (temporary files, locks) was cleared by the run that followed.
    assert not [p for p in out.rglob("*") if PARTIAL in p.name or LOCK in p.name]


@pytest.fixture
def pools(monkeypatch) -> list:
    """The batch's worker pools, recorded as they are made (the tests kill their actors)."""
    made = []

    class RecordedPool(cluster.WorkerPool):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(cluster, "WorkerPool", RecordedPool)
    return made


HOLD_AT = 12  # frames into a file


class HeldWorker(cluster.StylizeWorker):
    """Holds its call HOLD_AT frames into the file until some call has been retried (a worker was killed),
    so that a kill lands mid-file every time, whatever the progress board's lag."""

    def _reporter(self, key):
        import ray as ray_in_worker

        report = super()._reporter(key)

        def held(done: int) -> None:
            report(done)
            if done != HOLD_AT:
                return
            ray_in_worker.get(self.board.update.remote(key, done))  # the board shows exactly where it waits
            deadline = time.monotonic() + 60
            while max(ray_in_worker.get(self.board.snapshot.remote())[1].values()) == 1:
                if time.monotonic() > deadline:
                    return  # the test was not going to kill: go on (and its assertions fail)
                time.sleep(0.05)

        return held


def test_a_worker_killed_mid_file_is_restarted_and_the_file_retried(tmp_path, pools, monkeypatch):
    monkeypatch.setattr(cluster.WorkerPool, "worker_class", HeldWorker)
    src = tmp_path / "in"
    src.mkdir()
    for name in "abcd":
        write_clip(src / f"{name}.mp4", seconds=2.0, width=160, height=96, fps=24)
    killed = []

    def kill_every_worker_once(done: int, total: int) -> None:
        frames, attempts = ray.get(pools[0].board.snapshot.remote())
        held = [key for key, n in frames.items() if n == HOLD_AT and attempts[key] == 1]
        if len(held) == 2 and not killed:  # each worker is held inside a file
            killed.extend(pools[0].actors)
            for actor in pools[0].actors:
                ray.kill(actor, no_restart=False)  # as the OOM killer would: Ray restarts it

    jobs = expand([str(src)], tmp_path / "out")
    batch = cluster.run_ray_batch(jobs, "fast", StyleChoice(), EngineConfig(device="cpu"), ConvertConfig(),
                                  cluster.RayConfig(), progress=kill_every_worker_once)
    assert len(killed) == 2
    assert [(r.status, r.frames) for r in batch.results] == [("done", 48)] * 4
    assert sorted(r.attempts for r in batch.results) == [1, 1, 2, 2]  # the two files in the killed workers
    assert all(is_complete(job) for job in jobs)


class HeldOnTheFirstFile(cluster.StylizeWorker):
    """Holds every try of the first file HOLD_AT frames in, so that each try is killed mid-file, whatever the
    progress board's lag; other files run through."""

    def _reporter(self, key):
        import ray as ray_in_worker

        report = super()._reporter(key)

        def held(done: int) -> None:
            report(done)
            if key == 0 and done == HOLD_AT:
                ray_in_worker.get(self.board.update.remote(key, done))
                time.sleep(60)  # killed long before (else the test's assertions fail)

        return held


def test_a_file_that_kills_its_worker_every_time_fails_and_the_batch_goes_on(tmp_path, pools, monkeypatch):
    monkeypatch.setattr(cluster.WorkerPool, "worker_class", HeldOnTheFirstFile)
    src = tmp_path / "in"
    src.mkdir()
    for name, seconds in (("a", 4.0), ("b", 1.0), ("c", 1.0)):
        write_clip(src / f"{name}.mp4", seconds=seconds, width=160, height=96, fps=24)
    killed_on = set()

    def kill_whoever_has_the_first_file(done: int, total: int) -> None:
        frames, attempts = ray.get(pools[0].board.snapshot.remote())
        if frames.get(0, 0) == HOLD_AT and attempts[0] not in killed_on:
            killed_on.add(attempts[0])
            for actor in pools[0].actors:
                ray.kill(actor, no_restart=False)

    jobs = expand([str(src)], tmp_path / "out")
    batch = cluster.run_ray_batch(jobs, "fast", StyleChoice(), EngineConfig(device="cpu"), ConvertConfig(),
                                  cluster.RayConfig(workers=1, max_task_retries=2),
                                  progress=kill_whoever_has_the_first_file)
    assert killed_on == {1, 2, 3}
    first, *others = batch.results
    assert (first.status, first.attempts) == ("failed", 3) and "its worker died 3 times" in first.error
    assert [(r.status, r.frames, r.attempts) for r in others] == [("done", 24, 1)] * 2  # on a fresh worker


def test_segments_on_ray_equal_a_single_run(tmp_path, capsys):
    from test_segments import keyframed_clip, streams_of

    clip = keyframed_clip(tmp_path / "long.mp4")
    args = ["--model", "fast", "--smooth", "ema", "--json"]
    assert main(["stylize", str(clip), "-o", str(tmp_path / "single.mp4"), *args]) == 0
    assert main(["stylize", str(clip), "-o", str(tmp_path / "joined.mp4"), *args, "--segment-seconds", "1",
                 "--ray"]) == 0
    single, joined = json_in(capsys.readouterr().out)
    assert single["frames"] == joined["frames"] == 72
    assert streams_of(tmp_path / "joined.mp4") == streams_of(tmp_path / "single.mp4")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["joined.mp4", "long.mp4", "raw-long.mp4", "single.mp4"]


def test_workers_ask_for_a_gpu_each_on_cuda_and_share_the_cpus_otherwise():
    plan = cluster.worker_plan
    engine = EngineConfig(device="cuda")
    assert plan(engine, {"GPU": 4.0, "CPU": 64.0}, calls=10) == (4, {"num_gpus": 1, "num_cpus": 1}, engine)
    assert plan(EngineConfig(), {"GPU": 2.0, "CPU": 32.0}, calls=1)[:2] == (1, {"num_gpus": 1, "num_cpus": 1})
    count, resources, built = plan(EngineConfig(device="cpu", threads=2), {"CPU": 16.0}, calls=100)
    assert (count, resources, built.threads) == (8, {"num_cpus": 2}, 2)
    assert plan(EngineConfig(device="cpu"), {"CPU": 2.0}, calls=8)[:2] == (2, {"num_cpus": 1})
    with pytest.raises(BackendError, match="no GPUs"):
        plan(engine, {"CPU": 8.0}, calls=3)
