"""Many files on one machine: expand inputs, mirror them into an output folder, resume, report.

The stylizer is built once for the whole batch (it carries no per-stream state; each file's
smoother is its own). A file that fails is recorded with its one-line error and the batch goes
on. `--skip-existing` resumes an interrupted batch, and checks that each output is complete
(all the input's frames decode from it), not merely that a file exists: Ctrl-C keeps the part
of a file it finished, and that part must be redone.
"""

from __future__ import annotations

import glob
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..config import ConvertConfig
from ..errors import InputError, RtstyleError
from ..io.images import IMAGE_SUFFIXES, is_image_path, probe_image
from ..io.video import VIDEO_SUFFIXES
from .convert import convert_file

log = logging.getLogger(__name__)
MEDIA_SUFFIXES = IMAGE_SUFFIXES | VIDEO_SUFFIXES


@dataclass(frozen=True)
class Job:
    source: Path
    output: Path


@dataclass
class JobResult:
    source: str
    output: str
    status: str  # done, skipped, failed
    frames: int = 0
    seconds: float = 0.0
    error: str = ""
    attempts: int = 1  # more than 1 where a Ray worker died on it and Ray retried it


@dataclass
class BatchResult:
    results: list[JobResult] = field(default_factory=list)

    @property
    def failed(self) -> int:
        return sum(r.status == "failed" for r in self.results)

    @property
    def interrupted(self) -> bool:
        return any(r.status == "interrupted" for r in self.results)

    def counts(self) -> dict[str, int]:
        return {status: sum(r.status == status for r in self.results) for status in ("done", "skipped", "failed")}

    def summary(self) -> dict:
        """What `--json` prints: every file with its status, frames, seconds and error, and the counts."""
        return {"files": [asdict(r) for r in self.results], **self.counts()}


def expand(inputs: list[str], out_dir: Path) -> list[Job]:
    """Files, folders (recursive, media files only) and globs -> jobs whose outputs mirror them."""
    jobs: list[Job] = []
    for text in inputs:
        path = Path(text)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in MEDIA_SUFFIXES)
            jobs += [Job(p, out_dir / p.relative_to(path)) for p in files]
        elif path.is_file():
            jobs.append(Job(path, out_dir / path.name))
        else:
            matches = sorted(Path(m) for m in glob.glob(text, recursive=True) if Path(m).is_file())
            if not matches:
                raise InputError(f"no such file, folder or match: {text}")
            jobs += [Job(p, out_dir / p.name) for p in matches]
    outputs = [job.output for job in jobs]
    clash = next((o for o in outputs if outputs.count(o) > 1), None)
    if clash is not None:
        raise InputError(f"two inputs would both write {clash}; give them separate folders")
    return jobs


def expected_frames(path: Path) -> int:
    """Frames a conversion of `path` makes (1 for an image), from the container's count."""
    from ..io.video import VideoReader

    if is_image_path(path):
        return 1
    with VideoReader(path) as reader:
        return max(1, reader.info.frames)


def is_complete(job: Job) -> bool:
    """Whether `job.output` holds all of the input: every frame decodes (images: the file opens)."""
    if not job.output.is_file():
        return False
    try:
        if is_image_path(job.output):
            probe_image(job.output)
            return True
        import av

        with av.open(str(job.output)) as made, av.open(str(job.source)) as source:
            return sum(1 for _ in made.decode(video=0)) >= sum(1 for _ in source.demux(video=0) if _.size)
    except Exception:  # noqa: BLE001 - an output that cannot be read is not complete, whatever the reason
        return False


def job_totals(jobs: list[Job]) -> list[int]:
    """Frames each job will make, for a progress bar over the whole batch (1 for an input that cannot be read:
    it fails, and is reported, when its turn comes)."""
    totals = []
    for job in jobs:
        try:
            totals.append(expected_frames(job.source))
        except RtstyleError:
            totals.append(1)
    return totals


def run_job(job: Job, stylizer, config: ConvertConfig, skip_existing: bool = False, overwrite: bool = False,
            progress: Callable[[int], None] | None = None) -> JobResult:
    """One file of a batch, whatever runs it (this process or a Ray worker); `progress(frames done)`.

    Errors a user can act on become a failed result with the one-line message; anything else propagates.
    """
    started = time.perf_counter()
    if skip_existing and is_complete(job):
        return JobResult(str(job.source), str(job.output), "skipped")
    if job.output.exists() and not (overwrite or skip_existing):
        return JobResult(str(job.source), str(job.output), "failed",
                         error=f"{job.output} exists; -y replaces it, --skip-existing resumes")
    try:
        job.output.parent.mkdir(parents=True, exist_ok=True)
        result = convert_file(job.source, job.output, stylizer, config,
                              (lambda done, _total: progress(done)) if progress else None)
    except RtstyleError as exc:
        log.debug("%s failed", job.source, exc_info=exc)
        return JobResult(str(job.source), str(job.output), "failed",
                         seconds=round(time.perf_counter() - started, 3), error=str(exc))
    return JobResult(str(job.source), str(job.output), "interrupted" if result.interrupted else "done",
                     result.frames, round(time.perf_counter() - started, 3))


def run_batch(jobs: list[Job], stylizer, config: ConvertConfig, skip_existing: bool = False,
              overwrite: bool = False, progress: Callable[[int, int], None] | None = None) -> BatchResult:
    """Convert every job with one stylizer; `progress(frames done, frames total)` over the whole batch."""
    totals = job_totals(jobs)
    total, done = sum(totals), 0
    batch = BatchResult()
    for job, frames in zip(jobs, totals):
        base = done
        batch.results.append(run_job(job, stylizer, config, skip_existing, overwrite,
                                     (lambda d, b=base: progress(b + d, total)) if progress else None))
        if batch.results[-1].status == "interrupted":
            break
        done += frames
        if progress:
            progress(done, total)
    return batch
