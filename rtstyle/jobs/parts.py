"""Parts of one output, encoded apart and joined without re-encoding: what segments (one per
worker) and several encoders in one process (`encoders.py`) share.

Each part is an MP4 of video alone, encoded with the same settings and the source's time base, so
its packets keep the single run's timestamps; the join muxes them one after another and copies the
source's audio, subtitles, chapters, covers, attachments and tags once.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import shutil
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

from ..config import ConvertConfig
from ..errors import OutputError
from ..io.video import (
    CHAPTER_FORMATS,
    COVER_FORMATS,
    COVER_LEFT_OUT,
    SUBTITLE_CODECS,
    VideoReader,
    copy_attachments,
    copy_tags,
    default_codec,
    is_cover,
    main_video,
    report_left_out,
)

log = logging.getLogger(__name__)


def part_encoder_options(config: ConvertConfig, part: Path) -> dict[str, str]:
    """x264 without its macroblock tree for the parts: the tree, looking ahead, spends bits on what
    later frames reuse, and a part's first keyframe then stands out at the join. Without it a join
    is no more visible than any keyframe of a single run (warping error at the joins 0.00068, the same
    as keyframes forced at those frames in one stream, against 0.00096 with it; benchmarks/batch.py)."""
    codec = config.codec or default_codec(part)
    return {"x264-params": "mbtree=0"} if codec == "libx264" else {}


def part_muxer_options(time_base: Fraction) -> dict[str, str]:
    """The source's time base as the part's track and movie timescales. A part starts late, and MP4 says so
    with an empty edit counted in the movie timescale (1/1000 by default): 10.4167 s became 10.416 s, 8
    ticks early in 1/12288, so every frame of the part was stamped off the single run's."""
    scale = str(time_base.denominator)
    return {"video_track_timescale": scale, "movie_timescale": scale}


def join_segments(src: str | Path, parts: list[Path], dst: str | Path, config: ConvertConfig,
                  audio_until: float | None = None) -> int:
    """Mux the parts' video packets in order into `dst`, with the audio and subtitles of `src` copied once.

    Returns the video packets written. The parts must come from one encoder setup (their codec
    parameters are compared), as `stylize_segment` makes them. `audio_until`: seconds after which
    nothing more is copied (a conversion stopped early ends its audio with its video).
    """
    import av

    src, dst = Path(src), Path(dst)
    with contextlib.ExitStack() as stack:
        source = stack.enter_context(av.open(str(src), metadata_errors="ignore"))
        first = stack.enter_context(av.open(str(parts[0])))
        out = stack.enter_context(av.open(str(dst), "w"))
        template = first.streams.video[0]
        extradata = template.codec_context.extradata
        video = out.add_stream_from_template(template)
        copy_tags(dict(source.metadata), out.metadata)
        copy_tags(dict(main_video(source).metadata), video.metadata)
        dropped = _copy_chapters(src, out)
        copied = _copied_streams(source, out, config.copy_audio, dropped)
        report_left_out(dst, dropped)
        wanted = [s for s in source.streams if s.index in copied]  # demux() of nothing would mean everything
        others = ((packet, copied[packet.stream.index]) for packet in source.demux(*wanted)) if wanted else iter(())
        pending = next(others, None)
        written = 0
        for part in parts:  # one open at a time: a long film has hundreds of parts
            with av.open(str(part)) as container:
                if container.streams.video[0].codec_context.extradata != extradata:
                    raise OutputError(f"{part.name} was encoded with other codec parameters than the first part; "
                                      "the parts cannot be joined without re-encoding")
                for packet in container.demux(container.streams.video[0]):
                    if packet.size == 0:
                        continue
                    when = float(packet.pts * packet.time_base) if packet.pts is not None else None
                    while pending is not None and (when is None or _starts_by(pending[0], when)):
                        pending = _mux_copy(out, pending, others)
                    packet.stream = video
                    out.mux(packet)
                    written += 1
        while pending is not None and (audio_until is None or _starts_by(pending[0], audio_until)):
            pending = _mux_copy(out, pending, others)
    return written


def _starts_by(packet, seconds: float) -> bool:
    stamp = packet.dts if packet.dts is not None else packet.pts
    return stamp is None or float(stamp * packet.time_base) <= seconds


def _mux_copy(out, pending, others):
    """Mux one copied packet (flush packets carry no data) and return the next one."""
    packet, stream = pending
    if packet.size:
        packet.stream = stream
        out.mux(packet)
    return next(others, None)


def _copy_chapters(src: Path, out) -> list[str]:
    """The source's chapters and attachments into `out` where it holds them; returns what the join leaves out
    of the source."""
    with VideoReader(src) as reader:
        info = reader.info
    dropped = list(info.left_out)
    if info.alpha:
        dropped.append("the alpha channel (--segment-seconds writes none: convert without it to keep it)")
    if info.chapters and out.format.name in CHAPTER_FORMATS:
        out.set_chapters(info.chapters)
    elif info.chapters:
        dropped.append(f"{len(info.chapters)} chapters ({Path(out.name).suffix} holds none)")
    if info.covers and out.format.name not in COVER_FORMATS:
        dropped.append(COVER_LEFT_OUT)
    copy_attachments(info, out, dropped)
    return dropped


def _copied_streams(source, out, copy_audio: bool, dropped: list[str] | None = None) -> dict:
    """Output streams for the audio (when copied), the subtitles and the cover pictures this container holds,
    in the input's order."""
    takes = SUBTITLE_CODECS.get(out.format.name, set())
    copied = {}
    for stream in source.streams:
        if stream.type == "video" and is_cover(stream) and out.format.name in COVER_FORMATS:
            copied[stream.index] = made = out.add_stream_from_template(stream)
            made.disposition = stream.disposition
        elif stream.type == "audio" and copy_audio or stream.type == "subtitle" and stream.codec_context.name in takes:
            copied[stream.index] = made = out.add_stream_from_template(stream)
            copy_tags(dict(stream.metadata), made.metadata)
        elif stream.type == "subtitle":
            log.warning("subtitle stream %d (%s) left out: %s output does not hold it", stream.index,
                        stream.codec_context.name, Path(out.name).suffix)
    return copied


@contextlib.contextmanager
def parts_folder(dst: Path) -> Iterator[Path]:
    """A hidden folder beside `dst` for the parts (where every worker can write, when `dst` is on shared storage)."""
    folder = dst.with_name(f".{dst.name}.{secrets.token_hex(4)}.rtstyle-segments")
    folder.mkdir()
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


