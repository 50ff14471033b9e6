"""One long video across workers: split it at keyframes, stylize the pieces, join them without re-encoding.

plan -> stylize -> join:

* `plan_segments` reads the video's packets (no decoding) and starts a segment at the first keyframe
  at least N seconds after the last start. A segment is a range of presentation timestamps, not of
  frame counts: with B-frames (and B-pyramids) decode order is not presentation order, and with an
  open GOP the frames shown just before a keyframe are decoded after it, from the previous GOP.
* `stylize_segment` (run by any worker) seeks the source to the keyframe at or before its pre-roll's
  first frame, decodes from that keyframe packet on, and keeps the frames whose timestamps fall in
  [pre-roll start, next segment's start): decoding runs past the next keyframe until a frame at or
  after the segment's end comes out (the decoder gives frames in presentation order), so an open
  GOP's leading frames belong to the segment before, which decodes them with their references. The
  pre-roll frames only warm the temporal smoother and are dropped; the segment's own frames are
  encoded with their source timestamps, without audio, as a whole-file conversion would.
* `join_segments` muxes the parts' packets one after another into the output (no re-encoding) and
  copies the source's audio and subtitles once, so the result has the frames, timestamps and audio
  of a single-process run. Each part starts with a keyframe of its own encoder.

Without Ray, `convert_segmented` runs the segments one after another in this process
(`cluster.convert_segmented_on_ray` spreads them over workers).
"""

from __future__ import annotations

import bisect
import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path

import numpy as np

from ..config import ConvertConfig
from ..errors import InputError, OutputError
from ..io.sinks import FileSink, Sink
from ..io.sources import FileSource, Frame, Source
from ..io.video import (
    WEBM_AUDIO,
    VideoReader,
    VideoWriter,
    default_codec,
    main_video,
)
from ..pipeline.runner import run_stream
from .convert import ConvertResult, check_paths, claim_output, file_stream, temporary_path
from .parts import join_segments, part_encoder_options, part_muxer_options, parts_folder

log = logging.getLogger(__name__)

#: Pre-roll is long enough for the first (cold) frame's weight in the smoother to fall below one
#: level in 255 (strength ** frames); capped, since at the top strength that is over 100 frames.
MAX_PREROLL = 48
#: Tags the muxer writes itself (and would contradict if copied).


@dataclass(frozen=True)
class Segment:
    """The frames with timestamps in [first_pts, stop_pts), `first` to `stop` in presentation order
    (counted from the packets); `first_pts` is a keyframe's."""

    index: int
    first: int
    stop: int
    preroll: int  # frames before `first` stylized only to warm the temporal smoother, then dropped
    start_pts: int  # pts of frame first - preroll: where stylizing starts
    first_pts: int
    stop_pts: int | None  # pts of frame `stop` (the next segment's keyframe); None for the last segment
    seek: tuple[int, int | None] | None  # (pts, dts) of the keyframe decoding starts at; None: the file's start
    time_base: Fraction = Fraction(1, 1)  # of every pts here: the source's video stream's
    origin_pts: int = 0  # the video's first pts, where its seconds count from

    @property
    def frames(self) -> int:
        return self.stop - self.first


def preroll_frames(smooth: str, strength: float) -> int:
    """Frames a segment stylizes before its first one, so the smoother starts warm (0 without smoothing)."""
    if smooth == "none" or strength <= 0:
        return 0
    return min(MAX_PREROLL, math.ceil(math.log(1 / 255) / math.log(strength)))


def _video_packets(path: Path) -> tuple[list[int], dict[int, int | None], Fraction]:
    """(every frame's pts in presentation order, keyframes' pts -> their dts, time base), from packets alone."""
    import av

    try:
        container = av.open(str(path), metadata_errors="ignore")
    except av.error.FFmpegError as exc:
        raise InputError(f"{path} is not a video file that can be read ({exc.__class__.__name__})") from exc
    with container:
        if not container.streams.video:
            raise InputError(f"{path} has no video stream")
        stream = main_video(container)
        pts, keys = [], {}
        for packet in container.demux(stream):
            if packet.size == 0:
                continue
            if packet.pts is None:
                raise InputError(f"{path}: its video packets carry no timestamps, so it cannot be split; "
                                 "convert it without --segment-seconds")
            pts.append(packet.pts)
            if packet.is_keyframe:
                keys[packet.pts] = packet.dts
        return sorted(pts), keys, Fraction(stream.time_base)


def plan_segments(path: str | Path, seconds: float, preroll: int = 0) -> list[Segment]:
    """Segments of at least `seconds` each, starting at keyframes (fewer where keyframes are sparse)."""
    if seconds <= 0:
        raise InputError(f"segment length must be positive, got {seconds:g} s")
    pts, keys, time_base = _video_packets(Path(path))
    if not pts:
        raise InputError(f"{path} has no video frames")
    starts = [0]
    for i, stamp in enumerate(pts):
        if i and stamp in keys and (stamp - pts[starts[-1]]) * time_base >= seconds:
            starts.append(i)
    key_pts = sorted(keys)
    segments = []
    for n, first in enumerate(starts):
        stop = starts[n + 1] if n + 1 < len(starts) else len(pts)
        start = max(0, first - preroll) if n else 0
        at_or_before = bisect.bisect_right(key_pts, pts[start]) - 1
        seek = (key_pts[at_or_before], keys[key_pts[at_or_before]]) if n and at_or_before >= 0 else None
        stop_pts = pts[stop] if stop < len(pts) else None
        segments.append(Segment(n, first, stop, first - start, pts[start], pts[first], stop_pts, seek, time_base,
                                pts[0]))
    return segments


def check_segmentable(src: Path, dst: Path, config: ConvertConfig) -> None:
    """Refuse, before any work, what a join cannot make the same as a single run."""
    import av

    if dst.suffix.lower() in (".gif", ".avi"):
        raise OutputError(f"--segment-seconds cannot join {dst.suffix} files; write .mp4, .mov, .mkv or .webm")
    if dst.suffix.lower() == ".webm" and config.copy_audio:
        with av.open(str(src), metadata_errors="ignore") as container:
            other = [s.codec_context.name for s in container.streams.audio
                     if s.codec_context.name not in WEBM_AUDIO]
        if other:
            raise OutputError(f"--segment-seconds copies audio as it is, and WebM cannot hold {other[0]}; write "
                              ".mkv or .mp4, or add --no-audio")


class _SegmentSource(Source):
    """The source's frames from start_pts up to (not including) stop_pts, decoded from the segment's
    keyframe and numbered from 0."""

    def __init__(self, src: Path, segment: Segment, max_side: int | None):
        self.file = FileSource(src, max_side, start=segment.seek)
        self.segment = segment

    @property
    def info(self):
        return self.file.info

    @property
    def size(self) -> tuple[int, int]:
        return self.file.size

    @property
    def expected_frames(self) -> int:
        return self.segment.preroll + self.segment.frames

    def frames(self) -> Iterator[Frame]:
        index, segment = 0, self.segment
        for frame in self.file.frames():
            if frame.pts is None:
                continue
            if segment.seek is not None and frame.pts < segment.start_pts:
                continue  # before the pre-roll, or an open GOP's leading frame: the segment before has it
            if segment.stop_pts is not None and frame.pts >= segment.stop_pts:
                break  # the decoder gives frames in presentation order: the rest are the next segment's
            seconds = float((frame.pts - segment.origin_pts) * segment.time_base)
            yield Frame(frame.image, index, frame.pts, seconds=seconds, alpha=frame.alpha)
            index += 1

    def close(self) -> None:
        self.file.close()


class _DropPreroll(Sink):
    """Writes the segment's own frames; the pre-roll frames only warmed the smoother."""

    def __init__(self, sink: FileSink, first_pts: int):
        self.sink, self.first_pts = sink, first_pts
        self.layout = sink.layout
        self.dropped = 0

    def write(self, frame: Frame, image: np.ndarray) -> None:
        if frame.pts < self.first_pts:
            self.dropped += 1
        else:
            self.sink.write(frame, image)

    def end_early(self) -> None:
        self.sink.end_early()

    def close(self) -> None:
        self.sink.close()

    def abort(self) -> None:
        self.sink.abort()


def stylize_segment(src: str | Path, segment: Segment, part: str | Path, stylizer, config: ConvertConfig,
                    progress: Callable[[int], None] | None = None) -> int:
    """Stylize `segment` of `src` into the video file `part` (no audio); returns the frames written.

    `progress(frames written)`. Raises KeyboardInterrupt when a signal stopped it early.
    """
    src, part = Path(src), Path(part)
    source = _SegmentSource(src, segment, config.max_side)
    # The join copies what the whole file has (audio, subtitles, tags, chapters, covers) and names what it drops.
    info = replace(source.info, audio_streams=0, subtitle_streams=0, tags={}, video_tags={}, alpha=False,
                   chapters=[], covers=0, left_out=(), attachments=0)
    try:
        writer = VideoWriter(part, info, crf=config.crf, preset=config.preset, copy_audio=False,
                             codec=config.codec, pix_fmt=config.pix_fmt, options=part_encoder_options(config, part),
                             container_options=part_muxer_options(segment.time_base))
    except BaseException:
        source.close()
        raise
    sink = _DropPreroll(FileSink(writer), segment.first_pts)
    stream, smoother, faces = file_stream(stylizer, config)  # faces are tracked within the segment
    report = (lambda done, _total: progress(max(0, done - sink.dropped))) if progress else None
    result = run_stream(source, stylizer, sink, stream, report, smoother=smoother, faces=faces)
    if result.interrupted:
        raise KeyboardInterrupt
    if writer.frames_written == 0:
        raise InputError(f"{src}: segment {segment.index} (from {float(segment.first_pts * segment.time_base):.3f} s)"
                         " decoded no frames; a damaged stream: convert it without --segment-seconds")
    if writer.frames_written != segment.frames:  # the decoder dropped some (as it does in a single run)
        log.debug("segment %d: %d frames decoded, %d packets", segment.index, writer.frames_written, segment.frames)
    return writer.frames_written


def part_path(folder: Path, segment: Segment) -> Path:
    """MP4 for every part: it keeps each packet's dts (Matroska does not, and the join needs them) and holds
    H.264, H.265, VP9 and AV1 alike."""
    return folder / f"part-{segment.index:05d}.mp4"


def segment_config(config: ConvertConfig, dst: Path) -> ConvertConfig:
    """The encoder the output's type calls for, named: the parts' own type (MP4) would choose another for WebM."""
    return replace(config, codec=config.codec or default_codec(dst))


def join_into(src: Path, parts: list[Path], dst: Path, config: ConvertConfig, frames: int, started: float,
              width: int, height: int) -> ConvertResult:
    """Join `parts` into a temporary file beside `dst`, check its frame count, and move it into place."""
    tmp = temporary_path(dst)
    try:
        written = join_segments(src, parts, tmp, config)
        if written != frames:
            raise OutputError(f"joining the segments gave {written} frames, not {frames}")
        tmp.replace(dst)
    finally:
        tmp.unlink(missing_ok=True)
    return ConvertResult(dst, written, time.perf_counter() - started, width=width, height=height)


def convert_segmented(src: str | Path, dst: str | Path, stylizer, config: ConvertConfig, seconds: float,
                      progress: Callable[[int, int], None] | None = None, preroll: int | None = None
                      ) -> ConvertResult:
    """Stylize `src` segment by segment in this process and join the parts into `dst` (what `--ray` spreads out).

    `preroll`: frames before each segment that warm the smoother (None: `preroll_frames` of the config).
    """
    src, dst = Path(src), Path(dst)
    started = time.perf_counter()
    check_paths(src, dst)
    check_segmentable(src, dst, config)
    if preroll is None:
        preroll = preroll_frames(config.smooth, config.smooth_strength)
    segments = plan_segments(src, seconds, preroll)
    total = segments[-1].stop
    config = segment_config(config, dst)
    log.info("%s: %d segments of about %g s", src.name, len(segments), seconds)
    with claim_output(dst), parts_folder(dst) as folder:
        parts, written = [], 0
        for segment in segments:
            part = part_path(folder, segment)
            written += stylize_segment(src, segment, part, stylizer, config,
                                       (lambda d, s=segment: progress(s.first + d, total)) if progress else None)
            parts.append(part)
        size = frame_size(parts[0])
        return join_into(src, parts, dst, config, written, started, *size)


def frame_size(part: Path) -> tuple[int, int]:

    with VideoReader(part) as reader:
        return reader.info.width, reader.info.height
