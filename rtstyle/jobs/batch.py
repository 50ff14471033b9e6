"""Many files on one machine: expand inputs, mirror them into an output folder, resume, report.

The stylizer is built once for the whole batch (it carries no per-stream state; each file's
smoother is its own). A file that fails, whatever the reason, is recorded with its one-line
error and the batch goes on; only a full disk, where no later file can succeed, stops it, and
the files not tried are listed as such. `--skip-existing` resumes an interrupted batch, and
checks that each output is complete (all the input's frames decode from it; a picture decodes
to its end; a GIF lasts as long as the frames a GIF keeps), not merely that a file exists:
Ctrl-C keeps the part of a file it finished, and that part must be redone.

Folders are searched recursively, symlinked subfolders followed (a link back to a folder already
searched is skipped, and said), and the output folder is left out when it lies inside an input.
"""

from __future__ import annotations

import errno
import glob
import logging
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..config import ConvertConfig
from ..errors import InputError, OutputError, RtstyleError
from ..io.images import IMAGE_SUFFIXES, is_image_path, open_image
from ..io.video import VIDEO_SUFFIXES
from .animation import ANIMATED_OUTPUTS, frame_count
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
    disk_full: bool = False  # its failure was the disk (or quota) running out: no later file can succeed
    signal: int | None = None  # the signal that interrupted it (SIGINT, SIGTERM), where one did


STATUSES = ("done", "skipped", "failed", "interrupted", "not tried")
NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
DISK_FULL = "the disk is full (or the quota used up): free some space and rerun with --skip-existing"


@dataclass
class BatchResult:
    results: list[JobResult] = field(default_factory=list)
    stopped: str = ""  # why the batch stopped before its last file (a full disk), if it did

    @property
    def failed(self) -> int:
        return sum(r.status == "failed" for r in self.results)

    @property
    def interrupted(self) -> bool:
        return any(r.status == "interrupted" for r in self.results)

    @property
    def signal(self) -> int | None:
        """The signal that interrupted it, where known (a single file's exit code says it too)."""
        return next((r.signal for r in self.results if r.signal), None)

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(STATUSES, 0)
        for result in self.results:
            counts[result.status] += 1
        return counts

    def summary(self) -> dict:
        """What `--json` prints: every file with its status, frames, seconds and error, and the counts."""
        files = [{k: v for k, v in asdict(r).items() if k not in ("disk_full", "signal")} for r in self.results]
        counts = {status.replace(" ", "_"): n for status, n in self.counts().items()}
        return {"files": files, **counts, **({"stopped": self.stopped} if self.stopped else {})}

    def line(self) -> str:
        """The summary line: "3 done, 0 skipped, 1 failed", and what else happened where it did."""
        counts = self.counts()
        parts = [f"{counts[s]} {s}" for s in STATUSES[:3]] + [f"{counts[s]} {s}" for s in STATUSES[3:] if counts[s]]
        return ", ".join(parts) + (f"; stopped: {self.stopped}" if self.stopped else "")

    def kept_partials(self) -> list[str]:
        """One line for each output that Ctrl-C left holding the first part of its input."""
        return [f"{r.output} holds the first {r.frames} frame{'s' * (r.frames != 1)} of {r.source} "
                "(--skip-existing redoes it)" for r in self.results if r.status == "interrupted" and r.frames]


def expand(inputs: list[str], out_dir: Path) -> list[Job]:
    """Files, folders (recursive, media files only) and globs -> jobs whose outputs mirror them.

    The output folder is left out of folders and globs that hold it (a second run would stylize the
    first one's outputs); a file named on its own is taken wherever it is.
    """
    jobs: list[Job] = []
    outside = _OutputTree(out_dir)
    for text in inputs:
        path = Path(text)
        if path.is_dir():
            jobs += [Job(p, out_dir / p.relative_to(path)) for p in media_files(path, outside)]
        elif path.is_file():
            jobs.append(Job(path, out_dir / path.name))
        else:
            matches = sorted(Path(m) for m in glob.glob(text, recursive=True) if Path(m).is_file())
            if not matches:
                raise InputError(f"no such file, folder or match: {text}")
            jobs += [Job(p, out_dir / p.name) for p in matches if not outside.holds(p)]
    first: dict[Path, Job] = {}
    for job in jobs:  # a dict, not list.count: a batch of N files costs N, not N * N
        if first.setdefault(job.output, job) is not job:
            raise InputError(f"two inputs would both write {job.output}; give them separate folders")
    return jobs


class _OutputTree:
    """The batch's output folder, to leave out of its inputs: by device and inode (links and mounts
    included), and by resolved path for files found through globs."""

    def __init__(self, out_dir: Path):
        self.key = _key(out_dir)
        self.root = out_dir.resolve()

    def is_it(self, key: tuple[int, int] | None) -> bool:
        return key is not None and key == self.key

    def holds(self, path: Path) -> bool:
        return self.key is not None and path.resolve().is_relative_to(self.root)


def _key(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_dev, stat.st_ino


def media_files(folder: Path, outside: _OutputTree | None = None) -> list[Path]:
    """The media files under `folder`, sorted, symlinked subfolders followed; each folder once.

    A link to a folder already searched (a loop, or a second way into one) is skipped with a
    warning, as is a subfolder that cannot be read or a broken link; the output tree is left out.
    """
    found: list[Path] = []
    seen = {_key(folder)}

    def unreadable(exc: OSError) -> None:
        log.warning("%s: cannot search it (%s); skipped", exc.filename, exc.strerror or exc)

    for root, dirs, files in os.walk(folder, onerror=unreadable, followlinks=True):
        kept = []
        for name in sorted(dirs):
            sub = Path(root, name)
            key = _key(sub)
            if key is None:
                log.warning("%s: a broken link; skipped", sub)
            elif outside is not None and outside.is_it(key):
                log.info("%s: the output folder; left out of the inputs", sub)
            elif key in seen:
                log.warning("%s links to a folder already searched (%s); skipped", sub, sub.resolve())
            else:
                seen.add(key)
                kept.append(name)
        dirs[:] = kept
        for name in files:
            path = Path(root, name)
            if path.is_symlink() and not path.exists():
                log.warning("%s: a broken link; skipped", path)
            elif path.suffix.lower() in MEDIA_SUFFIXES and path.is_file():
                found.append(path)
    return sorted(found)


def make_output_folder(folder: Path) -> None:
    """Make `folder` (and its parents), or say in one line why it cannot be: a file there, no permission."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        what = "a link to nowhere" if folder.is_symlink() and not folder.exists() else "a file of that name"
        raise OutputError(f"cannot make the output folder {folder}: {what} is in the way") from None
    except OSError as exc:
        raise OutputError(f"cannot make the output folder {folder}: {exc.strerror or exc}") from None


def expected_frames(path: Path) -> int:
    """Frames a conversion of `path` makes (1 for an image), from the container's count."""
    from ..io.video import VideoReader

    if is_image_path(path):
        return 1
    with VideoReader(path) as reader:
        return max(1, reader.info.frames)


def is_complete(job: Job) -> bool:
    """Whether `job.output` holds all of the input: every frame decodes (a picture: to its end; a GIF: as
    long as the frames a GIF keeps of the input)."""
    if not job.output.is_file():
        return False
    try:
        if is_image_path(job.output):
            return _picture_complete(job.source, job.output)
        if job.output.suffix.lower() == ".gif":
            return _gif_complete(job.source, job.output)
        import av

        with av.open(str(job.output)) as made, av.open(str(job.source)) as source:
            return sum(1 for _ in made.decode(video=0)) >= sum(1 for _ in source.demux(video=0) if _.size)
    except Exception:  # noqa: BLE001 - an output that cannot be read is not complete, whatever the reason
        return False


def _picture_complete(source: Path, made: Path) -> bool:
    """Every pixel of every frame decodes (a PNG or JPEG cut short opens, its header being whole, but
    fails here), and an animation has as many frames as its source. Opened under rtstyle's pixel
    limit, not Pillow's (whose warning would reach the terminal)."""
    from PIL import ImageSequence

    with open_image(made) as image:
        frames = 0
        for frame in ImageSequence.Iterator(image):
            frame.load()
            frames += 1
    return frames >= (frame_count(source) if made.suffix.lower() in ANIMATED_OUTPUTS else 1)


def _gif_complete(source: Path, made: Path) -> bool:
    """The GIF lasts as long as the frames a GIF keeps of `source` (at most MAX_FPS a second) would."""
    import av
    from PIL import Image, ImageSequence

    from ..io.gif import durations_ms, kept_times
    from ..io.video import VideoReader

    with VideoReader(source) as reader:
        rate = float(reader.info.rate)
    with av.open(str(source)) as container:
        stream = container.streams.video[0]
        times = sorted(float(p.pts * p.time_base) for p in container.demux(stream) if p.size and p.pts is not None)
    if not times:
        return False
    expected = sum(durations_ms(kept_times(times), rate))
    lasts = 0
    with Image.open(made) as gif:  # a GIF cut short ends early: its frames stop at the cut
        for frame in ImageSequence.Iterator(gif):
            frame.load()
            lasts += frame.info.get("duration", 0)
    return lasts >= expected - 25  # under half of a 15 fps frame: the same clip, not one cut short


def job_totals(jobs: list[Job]) -> list[int]:
    """Frames each job will make, for a progress bar over the whole batch (1 for an input that cannot be read:
    it fails, and is reported, when its turn comes)."""
    totals = []
    for job in jobs:
        try:
            totals.append(expected_frames(job.source))
        except Exception:  # noqa: BLE001 - whatever is wrong with it is reported when its turn comes
            totals.append(1)
    return totals


def run_job(job: Job, stylizer, config: ConvertConfig, skip_existing: bool = False, overwrite: bool = False,
            progress: Callable[[int], None] | None = None) -> JobResult:
    """One file of a batch, whatever runs it (this process or a Ray worker); `progress(frames done)`.

    Any failure of the file becomes a failed result with a one-line message; a full disk is marked so
    (`disk_full`). Ctrl-C (KeyboardInterrupt) and running out of memory propagate.
    """
    started = time.perf_counter()
    try:
        if skip_existing and is_complete(job):
            return JobResult(str(job.source), str(job.output), "skipped")
        if job.output.exists() and not (overwrite or skip_existing):
            return JobResult(str(job.source), str(job.output), "failed",
                             error=f"{job.output} exists; -y replaces it, --skip-existing resumes")
        make_output_folder(job.output.parent)
        result = convert_file(job.source, job.output, stylizer, config,
                              (lambda done, _total: progress(done)) if progress else None)
    except (KeyboardInterrupt, MemoryError):
        raise
    except Exception as exc:  # noqa: BLE001 - one file's failure, whatever it is, must not end the batch
        log.debug("%s failed", job.source, exc_info=exc)
        return JobResult(str(job.source), str(job.output), "failed", seconds=round(time.perf_counter() - started, 3),
                         error=failure_line(job, exc), disk_full=_no_space(exc))
    return JobResult(str(job.source), str(job.output), "interrupted" if result.interrupted else "done",
                     result.frames, round(time.perf_counter() - started, 3), signal=result.signal)


def _no_space(exc: BaseException | None) -> bool:
    """Whether `exc`, or what it came from, is the disk or the quota running out."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, OSError) and exc.errno in NO_SPACE:
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def failure_line(job: Job, exc: BaseException) -> str:
    """One line for a file's failure: ours as they are, others with the file and what they were."""
    if isinstance(exc, RtstyleError):
        return str(exc)
    if _no_space(exc):
        return f"{job.output}: no space left on the disk (or the quota is used up) while writing it"
    if type(exc).__name__ == "DecompressionBombError":  # Pillow's pixel limit, said in its own words
        return f"{job.source}: {exc}"
    if isinstance(exc, OSError) and exc.strerror:
        where = f" ({exc.filename})" if exc.filename else ""
        return f"{job.source}: {exc.strerror}{where}"
    return f"{job.source}: {exc.__class__.__name__}: {exc}"


def run_batch(jobs: list[Job], stylizer, config: ConvertConfig, skip_existing: bool = False,
              overwrite: bool = False, progress: Callable[[int, int], None] | None = None) -> BatchResult:
    """Convert every job with one stylizer; `progress(frames done, frames total)` over the whole batch.

    Ctrl-C ends it with the file it was on marked interrupted (a video keeps what it finished); a full
    disk ends it with the files left marked not tried. Either way the result says what happened to each.
    """
    batch = BatchResult()
    current = None
    try:
        totals = job_totals(jobs)
        total, done = sum(totals), 0
        for job, frames in zip(jobs, totals):
            base, current = done, job
            result = run_job(job, stylizer, config, skip_existing, overwrite,
                             (lambda d, b=base: progress(b + d, total)) if progress else None)
            batch.results.append(result)
            current = None
            if result.status == "interrupted":
                break
            if result.disk_full:
                batch.stopped = DISK_FULL
                break
            done += frames
            if progress:
                progress(done, total)
    except KeyboardInterrupt:  # between files, or in one that cannot drain (a picture): nothing half-written kept
        if current is not None:
            batch.results.append(JobResult(str(current.source), str(current.output), "interrupted"))
    # Stopped early (Ctrl-C, a full disk): the files never started are listed, and counted, as not tried.
    batch.results += [JobResult(str(j.source), str(j.output), "not tried") for j in jobs[len(batch.results):]]
    return batch
