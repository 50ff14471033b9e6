"""File conversion: decode -> stylize -> encode through the stream runner, ordered and lossless.

Output goes to a hidden temporary file beside the target and is renamed into place only
when complete, so an error never leaves partial garbage under the output name. Ctrl-C, SIGTERM
and SIGHUP are the exception: they drain the frames already decoded, close the file properly
and keep it.

Two runs with the same output do not mix: a lock file claims the output for one run at a time
(the second is refused in one line), and each run's temporary file names its claim. Temporary
files and locks left by a killed run (SIGKILL, power loss) are removed by the next run in that
folder once their writer is provably gone: on this machine by the file system's lock and the
pid, from another machine by a lease the writer renews (io/locks.py).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..config import ConvertConfig
from ..errors import InputError, OutputError
from ..io.files import check_writable, same_file
from ..io.gif import GIF_MAX_SIDE, GifWriter
from ..io.images import is_image_path, probe_image, read_image, write_image
from ..io.locks import LOCK, PARTIAL, claim, remove_dead_partials, temporary_name  # noqa: F401 - LOCK, PARTIAL
from ..io.sinks import FileSink
from ..io.sources import FileSource
from ..io.video import VIDEO_SUFFIXES, VideoReader, VideoWriter
from ..pipeline.faces import FaceStage, keep_faces
from ..pipeline.runner import FrameFunction, Progress, StreamConfig, engine_failure, run_stream
from ..pipeline.scale import enlarge, shrink
from ..stylizers.base import Stylizer
from .animation import animates, convert_animation
from .encoders import ChunkedSink, chunkable, encoder_count
from .parts import parts_folder

log = logging.getLogger(__name__)


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
    """A hidden name beside `dst`, unique to this call, naming the claim on `dst` that it belongs to."""
    return temporary_name(dst)


def remove_stale_partials(folder: Path) -> None:
    """Delete temporary files whose writer is provably over (io/locks.py says how that is proved)."""
    remove_dead_partials(folder, force=True)


@contextlib.contextmanager
def claim_output(dst: Path) -> Iterator[None]:
    """Hold `dst` for this process (io/locks.py): a second run is refused, a dead one's claim taken over."""
    with claim(dst):
        yield


def check_paths(src: Path, dst: Path, probe: bool = True) -> None:
    """Refuse bad inputs and outputs before any model is built: cheap, and nothing gets written.

    `probe`: also open the input and decode its first frame, so a corrupt file fails now; a caller that
    opens it next anyway (`convert_file`) leaves that to the opening.
    """
    if not src.exists():
        raise InputError(f"input not found: {src}")
    if same_file(src, dst):
        raise OutputError(f"output would overwrite the input ({dst} is {src} by another path); choose another "
                          "output path")
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
    left_out: list[str] = []
    if animates(src, dst, left_out):  # every frame of an animated WebP or APNG
        tmp = temporary_path(dst)
        try:
            frames, seconds, width, height = convert_animation(src, dst, tmp, stylizer, config.max_side)
            tmp.replace(dst)
        finally:
            tmp.unlink(missing_ok=True)
        return ConvertResult(dst, frames, seconds, width=width, height=height)
    rgb, alpha = read_image(src, config.max_side)
    stylize_image = getattr(stylizer, "stylize_image", None)  # tiles huge images in bounded memory
    small = shrink([rgb], config.scale)[0]
    with engine_failure("stylize"):
        out = stylize_image(small) if stylize_image is not None else stylizer([small])[0]
    if config.scale < 1.0:
        out = enlarge([out], [rgb])[0]
    if config.faces > 0:
        out = keep_faces(rgb, out, config.faces)
    del rgb, small  # the input is not needed while the output is encoded (100 MP: 300 MB less at the peak)
    tmp = temporary_path(dst)
    try:
        write_image(tmp, out, alpha, left_out)
        tmp.replace(dst)
    finally:
        tmp.unlink(missing_ok=True)
    return ConvertResult(dst, 1, time.perf_counter() - start, width=out.shape[1], height=out.shape[0])


def file_stream(stylizer: Stylizer | FrameFunction, config: ConvertConfig
                ) -> tuple[StreamConfig, object | None, FaceStage | None]:
    """What a file's stream runs with, for a whole conversion and for a segment alike: the batch the
    stylizer measured fastest (or the user's), and the stream's own smoother and face stage."""
    batch = config.batch or getattr(stylizer, "preferred_batch", 4)
    stream = StreamConfig(batch=batch, queue_frames=config.queue_frames, live=False, scale=config.scale)
    make = getattr(stylizer, "make_smoother", None)
    smoother = make(config.smooth, config.smooth_strength) if make is not None else None
    return stream, smoother, FaceStage(config.faces) if config.faces > 0 else None


def _file_sink(src: Path, dst: Path, tmp: Path, info, stylizer, config: ConvertConfig,
               stack: contextlib.ExitStack) -> FileSink | ChunkedSink:
    """One encoder writing `tmp`, or several writing parts that are joined into it (`--encoders`)."""
    if dst.suffix.lower() == ".gif":
        return FileSink(GifWriter(tmp, info))
    encoders = encoder_count(config.encoders, stylizer)
    why_not = chunkable(dst, info, config) if encoders > 1 else None
    if why_not and config.encoders != "auto":
        log.info("one encoder: %s", why_not)
    if encoders > 1 and why_not is None:
        return ChunkedSink(src, tmp, info, config, encoders, stack.enter_context(parts_folder(dst)))
    return FileSink(VideoWriter(tmp, info, crf=config.crf, preset=config.preset, copy_audio=config.copy_audio,
                                codec=config.codec, pix_fmt=config.pix_fmt))


def convert_video(src: Path, dst: Path, stylizer: Stylizer | FrameFunction, config: ConvertConfig,
                  progress: Progress | None = None) -> ConvertResult:
    gif = dst.suffix.lower() == ".gif"
    source = FileSource(src, config.max_side or (GIF_MAX_SIDE if gif else None))
    info = source.info
    if info.color.hdr:
        log.warning("HDR input (%s): stylized on its coded values and written with the same tags, "
                    "without tone mapping", info.color.describe())
    tmp = temporary_path(dst)
    with contextlib.ExitStack() as stack:
        try:
            sink = _file_sink(src, dst, tmp, info, stylizer, config, stack)
        except BaseException:
            source.close()
            tmp.unlink(missing_ok=True)
            raise
        try:
            stream, smoother, faces = file_stream(stylizer, config)
            result = run_stream(source, stylizer, sink, stream, progress, smoother=smoother, faces=faces)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    writer = sink if isinstance(sink, ChunkedSink) else sink.writer
    if writer.frames_written == 0:
        tmp.unlink(missing_ok=True)
        raise InputError(f"{src}: no frames were decoded")
    tmp.replace(dst)
    return ConvertResult(dst, writer.frames_written, result.metrics["seconds"], result.interrupted, info.width,
                         info.height, result.metrics, result.signal)
