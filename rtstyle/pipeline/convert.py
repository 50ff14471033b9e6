"""File conversion: decode -> stylize -> encode through the stream runner, ordered and lossless.

Output goes to a hidden temporary file beside the target and is renamed into place only
when complete, so an error never leaves partial garbage under the output name. Ctrl-C, SIGTERM
and SIGHUP are the exception: they drain the frames already decoded, close the file properly
and keep it.

Two runs with the same output do not mix: each writes its own temporary file (named with its
pid), and a lock file claims the output for one run at a time; the second is refused in one
line. Temporary files and locks left by a killed run (SIGKILL, power loss) are removed by the
next run in that folder once their pid is gone.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..config import ConvertConfig
from ..errors import InputError, OutputError
from ..io.gif import GIF_MAX_SIDE, GifWriter
from ..io.images import is_image_path, probe_image, read_image, write_image
from ..io.sinks import FileSink
from ..io.sources import FileSource
from ..io.video import VIDEO_SUFFIXES, VideoReader, VideoWriter, check_writable
from .faces import FaceStage, keep_faces
from .pending import Stylizer
from .runner import FrameFunction, Progress, StreamConfig, run_stream
from .scale import enlarge, shrink

log = logging.getLogger(__name__)
PARTIAL, LOCK = ".rtstyle-partial", ".rtstyle-lock"


@dataclass(frozen=True)
class ConvertResult:
    output: Path
    frames: int
    seconds: float
    interrupted: bool = False
    width: int = 0
    height: int = 0
    metrics: dict | None = None
    signal: int | None = None  # the signal that stopped it early, if one did

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


def temporary_path(dst: Path) -> Path:
    """A hidden name beside `dst`, unique to this process and call: `.NAME.PID-RANDOM.rtstyle-partial.EXT`."""
    return dst.with_name(f".{dst.stem}.{os.getpid()}-{secrets.token_hex(3)}{PARTIAL}{dst.suffix}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def remove_stale_partials(folder: Path) -> None:
    """Delete temporary files whose writer is provably dead (its pid, in the name, is gone)."""
    for path in folder.glob(f".*{PARTIAL}*"):
        pid = path.name.rsplit(PARTIAL, 1)[0].rsplit(".", 1)[-1].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            log.info("removing %s, left by a run that no longer exists (pid %s)", path.name, pid)
            path.unlink(missing_ok=True)


@contextlib.contextmanager
def claim_output(dst: Path) -> Iterator[None]:
    """Hold `dst` for this process: a lock file made with O_EXCL, taken over only from a dead pid."""
    lock = dst.with_name(f".{dst.name}{LOCK}")
    remove_stale_partials(dst.parent)
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            owner = lock.read_text().strip() if lock.exists() else ""
            if owner.isdigit() and _alive(int(owner)) and int(owner) != os.getpid():
                raise OutputError(f"another rtstyle run (pid {owner}) is writing {dst}; wait for it or choose "
                                  "another output") from None
            lock.unlink(missing_ok=True)  # left by a dead run
            continue
        with os.fdopen(fd, "w") as handle:
            handle.write(str(os.getpid()))
        break
    else:
        raise OutputError(f"cannot claim {dst}: {lock.name} keeps reappearing")
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)


def check_paths(src: Path, dst: Path, probe: bool = True) -> None:
    """Refuse bad inputs and outputs before any model is built: cheap, and nothing gets written.

    `probe`: also open the input and decode its first frame, so a corrupt file fails now; a caller that
    opens it next anyway (`convert_file`) leaves that to the opening.
    """
    if not src.exists():
        raise InputError(f"input not found: {src}")
    if src.resolve() == dst.resolve():
        raise OutputError("output would overwrite the input; choose another output path")
    if is_image_path(src) != is_image_path(dst):
        kind = "an image" if is_image_path(src) else "a video"
        raise OutputError(f"input is {kind}, so the output needs a matching extension, got {dst.name!r}")
    if not is_image_path(dst) and dst.suffix.lower() not in VIDEO_SUFFIXES:
        raise OutputError(f"unsupported output type {dst.suffix!r}; use one of {sorted(VIDEO_SUFFIXES)}")
    check_writable(dst)
    if not probe:
        return
    if is_image_path(src):
        probe_image(src)
    else:
        VideoReader(src).close()


def convert_file(src: str | Path, dst: str | Path, stylizer: Stylizer | FrameFunction, config: ConvertConfig,
                 progress: Progress | None = None) -> ConvertResult:
    """Stylize an image or a video file into `dst`."""
    src, dst = Path(src), Path(dst)
    check_paths(src, dst, probe=False)  # the input is opened next, which refuses a corrupt one
    with claim_output(dst):
        if is_image_path(src):
            return convert_image(src, dst, stylizer, config)
        return convert_video(src, dst, stylizer, config, progress)


def convert_image(src: Path, dst: Path, stylizer: Stylizer | FrameFunction, config: ConvertConfig) -> ConvertResult:
    start = time.perf_counter()
    rgb, alpha = read_image(src, config.max_side)
    stylize_image = getattr(stylizer, "stylize_image", None)  # tiles huge images in bounded memory
    small = shrink([rgb], config.scale)[0]
    out = stylize_image(small) if stylize_image is not None else stylizer([small])[0]
    if config.scale < 1.0:
        out = enlarge([out], [rgb])[0]
    if config.faces > 0:
        out = keep_faces(rgb, out, config.faces)
    tmp = temporary_path(dst)
    try:
        write_image(tmp, out, alpha)
        tmp.replace(dst)
    finally:
        tmp.unlink(missing_ok=True)
    return ConvertResult(dst, 1, time.perf_counter() - start, width=out.shape[1], height=out.shape[0])


def convert_video(src: Path, dst: Path, stylizer: Stylizer | FrameFunction, config: ConvertConfig,
                  progress: Progress | None = None) -> ConvertResult:
    gif = dst.suffix.lower() == ".gif"
    source = FileSource(src, config.max_side or (GIF_MAX_SIDE if gif else None))
    info = source.info
    if info.color.hdr:
        log.warning("HDR input (%s): stylized on its coded values and written with the same tags, "
                    "without tone mapping", info.color.describe())
    tmp = temporary_path(dst)
    try:
        writer = GifWriter(tmp, info) if gif else VideoWriter(
            tmp, info, crf=config.crf, preset=config.preset, copy_audio=config.copy_audio, codec=config.codec,
            pix_fmt=config.pix_fmt)
    except BaseException:
        source.close()
        tmp.unlink(missing_ok=True)
        raise
    batch = config.batch or getattr(stylizer, "preferred_batch", 4)
    stream = StreamConfig(batch=batch, queue_frames=config.queue_frames, live=False, scale=config.scale)
    try:
        make = getattr(stylizer, "make_smoother", None)
        smoother = make(config.smooth, config.smooth_strength) if make is not None else None
        faces = FaceStage(config.faces) if config.faces > 0 else None
        result = run_stream(source, stylizer, FileSink(writer), stream, progress, smoother=smoother, faces=faces)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if writer.frames_written == 0:
        tmp.unlink(missing_ok=True)
        raise InputError(f"{src}: no frames were decoded")
    tmp.replace(dst)
    return ConvertResult(dst, writer.frames_written, result.metrics["seconds"], result.interrupted, info.width,
                         info.height, result.metrics, result.signal)
