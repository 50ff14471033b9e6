"""Video files through PyAV: a reader that yields upright RGB frames with their timestamps,
and a writer that encodes them and copies the input's audio packets through unchanged.

The two are symmetric (Real-ESRGAN's reader/writer pair): the reader probes the metadata once
(`VideoInfo`), the writer is built from that metadata, so frame rate, time base, timestamps
and audio all come from one place.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path

import numpy as np

from ..errors import InputError, OutputError
from .color import FULL, LIMITED, ColorInfo, color_of, yuv_layout
from .locks import shown_path

#: Containers read and written as video (a .gif is decoded and encoded like one).
VIDEO_SUFFIXES = {".mp4", ".mov", ".mkv", ".m4v", ".avi", ".webm", ".gif"}

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VideoInfo:
    path: Path
    width: int  # after rotation and resizing: the size of the frames the reader yields
    height: int
    rate: Fraction  # average frame rate
    time_base: Fraction
    frames: int  # from the container; an estimate when it does not say
    duration: float  # seconds
    rotation: int  # degrees counter-clockwise the decoded picture is turned to stand upright
    audio_streams: int
    mirrored: bool = False  # after the rotation, mirrored left to right (a display matrix with a flip)
    color: ColorInfo = ColorInfo()  # what the YUV samples mean; the output keeps it
    bit_depth: int = 8  # of the coded samples; above 8, frames are decoded as 16-bit RGB
    subtitle_streams: int = 0
    tags: dict = field(default_factory=dict)  # the container's metadata: title, creation_time, ...
    video_tags: dict = field(default_factory=dict)  # the video stream's: language, handler_name, ...
    chroma: str = "420"  # the input's chroma subsampling: "420", "422" or "444" (RGB sources: "444")
    alpha: bool = False  # frames carry an alpha channel (VideoFrame.alpha), which the output keeps where it can
    field_order: int = 0  # FFmpeg's AVFieldOrder: 0 unknown, 1 progressive, 2 top first, 3 bottom first, 4, 5 mixed
    chapters: list = field(default_factory=list)  # the container's, as PyAV gives them
    covers: int = 0  # attached pictures (cover art), copied where the output holds them
    left_out: tuple[str, ...] = ()  # other video streams, data streams: named in one warning line, not stylized
    attachments: int = 0  # Matroska attachments (the fonts of ASS subtitles, files): copied into Matroska


@dataclass
class VideoFrame:
    image: np.ndarray  # H x W x 3 RGB, upright: uint8, or uint16 for sources above 8 bits
    pts: int | None  # in VideoInfo.time_base
    alpha: np.ndarray | None = None  # H x W, the image's dtype, where the source has alpha


def _open(path: Path):
    import av

    if not path.exists():
        raise InputError(f"input not found: {path}")
    if path.is_dir():
        raise InputError(f"input is a directory, not a file: {path}")
    try:
        container = av.open(str(path), metadata_errors="ignore")
    except (av.error.FFmpegError, UnicodeDecodeError) as exc:
        raise InputError(f"{path} is not a video or image file that can be read ({exc.__class__.__name__})") from exc
    if not container.streams.video:
        container.close()
        raise InputError(f"{path} has no video stream")
    return container


def fit_size(width: int, height: int, max_side: int | None) -> tuple[int, int]:
    """Scale down to at most `max_side` on the long side, keeping sides even for 4:2:0 video."""
    if not max_side or max(width, height) <= max_side:
        return width, height
    scale = max_side / max(width, height)
    return max(2, round(width * scale / 2) * 2), max(2, round(height * scale / 2) * 2)


def chroma_of(layout) -> str:
    """"444", "422" or "420" for a decoded frame's pixel format (RGB: "444"; palettes, gray: "420")."""
    components = layout.components
    if layout.has_palette or len(components) < 3:
        return "420"
    if layout.is_rgb:
        return "444"
    luma, chroma = components[0], components[1]
    if chroma.width >= luma.width and chroma.height >= luma.height:
        return "444"
    return "422" if chroma.height >= luma.height else "420"


def is_cover(stream) -> bool:
    """An attached picture (cover art): a video stream of one still."""
    import av

    return bool(stream.disposition & av.stream.Disposition.attached_pic)


def main_video(container):
    """The video stream that is stylized: the first that is not a cover picture (some files list the cover first)."""
    return next((s for s in container.streams.video if not is_cover(s)), container.streams.video[0])


def _describe(stream) -> str:
    context = stream.codec_context
    return f"video stream {stream.index} ({context.name} {context.width}x{context.height})"


def _left_out(container, main) -> tuple[str, ...]:
    """What no output gets: other video streams and data streams.

    Not named: an MP4 chapter track and a QuickTime timecode track (data streams that the muxer
    writes again from the chapters and from the video stream's `timecode` tag, which are copied).
    """
    dropped = [_describe(s) for s in container.streams.video if s is not main and not is_cover(s)]
    timecode = "timecode" in {key.lower() for key in main.metadata}
    for stream in container.streams:
        if stream.type == "data":
            handler = str(stream.metadata.get("handler_name", ""))
            if (container.format.name.startswith("mov") and ("Subtitle" in handler or "Chapter" in handler)
                    and _chapters(container)) or ("Time" in handler and timecode):
                continue
            dropped.append(f"data stream {stream.index} ({handler or 'unknown'})")
    return tuple(dropped)


def _chapters(container) -> list:
    try:
        return list(container.chapters())
    except Exception:  # an old PyAV, or a demuxer's odd chapter: chapters are not worth failing for
        log.debug("reading chapters failed", exc_info=True)
        return []


def _alpha_decoder(stream):
    """libvpx's VP9 decoder for VP9 with alpha: FFmpeg's own decodes the colour and ignores the alpha
    (WebM carries it beside each frame, marked by the stream's alpha_mode tag)."""
    import av

    alpha = any(key.lower() == "alpha_mode" and str(value) == "1" for key, value in stream.metadata.items())
    if stream.codec_context.name != "vp9" or not alpha:
        return None
    try:
        decoder = av.CodecContext.create("libvpx-vp9", "r")
    except (av.error.FFmpegError, ValueError):
        log.warning("%s: VP9 with alpha, but this FFmpeg has no libvpx decoder: the alpha is left out",
                    stream.container.name)
        return None
    decoder.thread_type = "AUTO"
    return decoder


def side_data(frame) -> list:
    """A frame's side data entries. PyAV's container is a Mapping whose iteration gave the entries
    up to 18.1.0 and gives their types (its keys) from 18.1.1 on: both are taken."""
    container = frame.side_data
    return [entry if hasattr(entry, "type") else container[entry] for entry in container]


def orientation(frame) -> tuple[int, bool]:
    """(degrees counter-clockwise, mirrored) that stand `frame` upright, from its display matrix.

    The eight orientations a display matrix can express are a turn by a multiple of 90 degrees,
    optionally followed by a left-right mirror (a top-bottom mirror is a half turn plus that
    mirror). PyAV's `frame.rotation` alone reports a mirror as a half turn, so the matrix itself
    is matched against the eight, in FFmpeg's layout (16.16 fixed point, row-major 3 x 3).
    """
    matrix = next((np.frombuffer(bytes(side), dtype=np.int32) for side in side_data(frame)
                   if "DISPLAYMATRIX" in str(side.type)), None)
    if matrix is None or matrix.size < 9:
        return int(round(getattr(frame, "rotation", 0) or 0)) % 360, False
    observed = np.sign(np.round(matrix[[0, 1, 3, 4]] / 65536.0)).astype(int)
    for degrees in (0, 90, 180, 270):
        cos, sin = round(np.cos(np.radians(degrees))), round(np.sin(np.radians(degrees)))
        turn = np.array([cos, -sin, sin, cos])
        if np.array_equal(observed, turn):
            return degrees, False
        if np.array_equal(observed, turn * np.array([-1, 1, -1, 1])):  # mirror: column 0 negated
            return degrees, True
    log.warning("display matrix %s is not a multiple of 90 degrees; ignoring it", matrix[[0, 1, 3, 4]].tolist())
    return 0, False


class VideoReader:
    """Decodes a video file into upright RGB frames (rotation metadata applied)."""

    def __init__(self, path: str | Path, max_side: int | None = None, threaded: bool = True,
                 start: tuple[int, int | None] | None = None):
        """`start`: (pts, dts) of a keyframe packet of the first video stream: decoding begins there."""
        self.path = Path(path)
        self._start = start
        self._container = _open(self.path)
        stream = main_video(self._container)
        # Frame threading is several times faster for files; it adds latency, so live sources skip it.
        stream.thread_type = "AUTO" if threaded else "SLICE"
        self._stream = stream
        self._decoder = _alpha_decoder(stream) or stream.codec_context
        rotation, mirrored = self._probe_orientation()
        self._color = color_of(self._first, stream.codec_context.height)
        self._swscale = self._color.swscale()
        bit_depth = max(component.bits for component in self._first.format.components)
        # 10-bit sources keep their levels: the network runs in float anyway (a High10 gradient
        # row has 43 distinct levels decoded to 8 bits, 166 decoded to 16).
        self._rgb_format = "rgb48le" if bit_depth > 8 else "rgb24"
        layout = self._first.format
        alpha = any(component.is_alpha for component in layout.components) and not layout.has_palette
        if alpha:
            self._rgb_format = "rgba64le" if bit_depth > 8 else "rgba"
        coded = (stream.codec_context.width, stream.codec_context.height)
        if coded[0] <= 0 or coded[1] <= 0:
            raise InputError(f"{self.path} has a video stream without a picture size")
        self._scaled = fit_size(*coded, max_side)
        width, height = self._scaled if rotation % 180 == 0 else self._scaled[::-1]
        rate = stream.average_rate or stream.guessed_rate or Fraction(25)
        duration = float(stream.duration * stream.time_base) if stream.duration else (
            self._container.duration / 1e6 if self._container.duration else 0.0)
        frames = stream.frames or round(duration * rate)
        self.info = VideoInfo(self.path, width, height, Fraction(rate), Fraction(stream.time_base), int(frames),
                              duration, rotation, len(self._container.streams.audio), mirrored,
                              self._color, bit_depth, len(self._container.streams.subtitles),
                              dict(self._container.metadata), dict(stream.metadata), chroma_of(layout), alpha,
                              int(stream.codec_context.field_order or 0), _chapters(self._container),
                              sum(1 for s in self._container.streams.video if is_cover(s)),
                              _left_out(self._container, stream),
                              sum(1 for s in self._container.streams if s.type == "attachment"))

    def _probe_orientation(self) -> tuple[int, bool]:
        """(rotation, mirrored) from the first frame's display matrix (PyAV exposes it per frame)."""
        # One decoder generator for the whole file: a second one would restart a flushed decoder.
        if self._start is None:
            self._decoded = self._decode(self._container.demux(self._stream))
        else:
            self._decoded = self._decode_from(*self._start)
        try:
            first = next(self._decoded)
        except StopIteration:
            raise InputError(f"{self.path} has no decodable video frames") from None
        except Exception as exc:  # av raises many FFmpegError subclasses on corrupt data
            raise InputError(f"{self.path}: cannot decode video ({exc})") from exc
        self._first = first
        return orientation(first)

    def _decode_from(self, key_pts: int, key_dts: int | None) -> Iterator:
        """Frames decoded from the keyframe packet at `key_pts` on: packets before it are never decoded.

        The seek is a hint: a demuxer may land on an earlier keyframe (packets are skipped up to
        ours) or a later one (then it reads again from the start of the file).
        """
        stream = self._stream
        for target in (key_dts if key_dts is not None else key_pts, None):
            if target is None:
                self._container.seek(0)
            else:
                self._container.seek(target, stream=stream, backward=True)
            packets = self._container.demux(stream)
            for packet in packets:
                if packet.size == 0:
                    continue
                if packet.is_keyframe and packet.pts == key_pts:
                    yield from self._decoder.decode(packet)
                    yield from self._decode(packets)  # the flush packet at the end drains the decoder
                    return
                passed = packet.dts > key_dts if key_dts is not None and packet.dts is not None else (
                    packet.is_keyframe and packet.pts is not None and packet.pts > key_pts)
                if passed:
                    break  # the seek landed past our keyframe
        raise InputError(f"{self.path}: no keyframe at timestamp {key_pts}")

    def _decode(self, packets) -> Iterator:
        for packet in packets:
            yield from self._decoder.decode(packet)

    def __iter__(self) -> Iterator[VideoFrame]:
        import av

        first = self._first
        self._first = None
        if first is not None:
            yield self._convert(first)
        try:
            for frame in self._decoded:
                yield self._convert(frame)
        except av.error.FFmpegError as exc:
            raise InputError(f"{self.path}: decoding failed mid-stream ({exc})") from exc

    def _convert(self, frame) -> VideoFrame:
        width, height = self._scaled
        image = frame.to_ndarray(format=self._rgb_format, width=width, height=height,
                                 src_colorspace=self._swscale["colorspace"], src_color_range=self._swscale["range"],
                                 interpolation=self._swscale["interpolation"])
        # The display matrix: turn by `rotation` degrees counter-clockwise (np.rot90 turns that way
        # for positive k), then mirror left to right where it has a flip.
        if self.info.rotation or self.info.mirrored:
            image = np.rot90(image, k=self.info.rotation // 90)
            image = np.ascontiguousarray(image[:, ::-1] if self.info.mirrored else image)
        if image.shape[2] == 4:
            return VideoFrame(np.ascontiguousarray(image[..., :3]), frame.pts, np.ascontiguousarray(image[..., 3]))
        return VideoFrame(image, frame.pts)

    def close(self) -> None:
        self._container.close()

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _encoder_formats(codec: str) -> set[str]:
    import av

    try:
        return {fmt.name for fmt in av.Codec(codec, "w").video_formats or []}
    except (av.error.FFmpegError, ValueError):
        return set()  # check_encoder says why in one line


#: Pixel formats with alpha, best first, for the encoders that hold alpha; libvpx lists 4:4:4 with alpha but
#: opens only with 4:2:0 (its alpha is a second 4:2:0 stream).
ALPHA_FORMATS = ("yuva444p10le", "yuva444p", "yuva422p10le", "yuva420p", "rgba", "argb", "bgra", "gbrap")
ENCODER_ALPHA = {"libvpx-vp9": "yuva420p", "libvpx": "yuva420p"}


def default_pix_fmt(info: VideoInfo, codec: str = "libx264", dropped: list[str] | None = None) -> str:
    """The input's chroma (4:2:0, 4:2:2, 4:4:4) and depth, or 4:4:4 where a side is odd (4:2:0 and 4:2:2
    need even widths), with alpha where the input and the encoder have it.

    What the encoder cannot keep is appended to `dropped` (the alpha, the chroma) or said in the log
    (the depth).
    """
    formats = _encoder_formats(codec)
    even = info.width % 2 == 0 and info.height % 2 == 0
    if not even:
        log.warning("odd frame size %dx%d: encoding 4:4:4 to keep every pixel", info.width, info.height)
    chroma = info.chroma if even else "444"
    deep = info.bit_depth > 8
    if info.alpha:
        alpha = [f for f in (ENCODER_ALPHA.get(codec), *ALPHA_FORMATS) if f in formats]
        if alpha:
            _name_what_alpha_costs(alpha[0], chroma, info.bit_depth, codec, dropped)
            return alpha[0]
        if dropped is not None:
            dropped.append(f"the alpha channel ({codec} holds none)")
    if formats and f"yuv{chroma}p" not in formats and f"yuv{chroma}p10le" not in formats:
        kept = next((c for c in ("444", "422", "420") if f"yuv{c}p" in formats or f"yuv{c}p10le" in formats), "420")
        if dropped is not None and int(kept) < int(chroma):
            dropped.append(f"4:{chroma[1]}:{chroma[2]} chroma ({codec} writes 4:{kept[1]}:{kept[2]})")
        chroma = kept
    name = f"yuv{chroma}p"
    if not deep:
        return name if not formats or name in formats else f"{name}10le"
    if formats and f"{name}10le" not in formats:
        log.warning("%s has no 10-bit %s: writing 8 bits (--codec libx264 keeps 10)", codec, name)
        return name
    return f"{name}10le"


def _name_what_alpha_costs(pix_fmt: str, chroma: str, bit_depth: int, codec: str, dropped: list[str] | None) -> None:
    """The chroma and depth an encoder's alpha format keeps less of than the input had (libvpx's alpha
    is 4:2:0 at 8 bits, whatever came in: a ProRes 4444 12-bit source loses both)."""
    import av

    if dropped is None:
        return
    layout = av.VideoFormat(pix_fmt, 16, 16)  # sized: the planes' widths tell the subsampling
    kept = chroma_of(layout)
    if int(kept) < int(chroma):
        dropped.append(f"4:{chroma[1]}:{chroma[2]} chroma ({codec} with alpha writes 4:{kept[1]}:{kept[2]})")
    bits = max(component.bits for component in layout.components)
    if bits < bit_depth:
        dropped.append(f"{bit_depth}-bit depth ({codec} with alpha writes {bits} bits)")


def encoder_options(codec: str, crf: int, preset: str) -> dict[str, str]:
    """Quality and speed settings in each encoder's own terms."""
    if codec == "libx264":
        return {"crf": str(crf), "preset": preset}
    if codec == "libx265":
        return {"crf": str(crf), "preset": preset, "x265-params": "log-level=error"}
    if codec == "libvpx-vp9":
        # Constant quality (b=0); VP9's crf scale runs to 63, and 18 + 14 looks like x264's 18.
        return {"crf": str(min(63, crf + 14)), "b": "0", "deadline": "realtime", "cpu-used": "8", "row-mt": "1"}
    if codec in NVENC_CODECS:
        # NVENC's constant quality: variable rate with a quality target and no bitrate cap. Its cq runs
        # 0-51 like crf; the x264 preset names map onto NVENC's p1 (fastest) .. p7 (best).
        return {"rc": "vbr", "cq": str(max(1, crf)), "b": "0", "preset": NVENC_PRESETS.get(preset, "p4"),
                "tune": "hq"}
    return {}  # other hardware encoders have knobs of their own


#: NVIDIA's hardware encoders (consumer and workstation cards, and data-centre cards such as the T4, L4
#: and L40S; the A100, H100 and H200 have none). FFmpeg opens them only where the driver is there.
NVENC_CODECS = {"h264_nvenc", "hevc_nvenc", "av1_nvenc"}
NVENC_PRESETS = {"ultrafast": "p1", "superfast": "p2", "veryfast": "p3", "faster": "p4", "fast": "p5",
                 "medium": "p5", "slow": "p6", "slower": "p7"}


def _opus_packets(source, outputs: dict):
    """(packet, output stream) of `source`'s audio decoded and re-encoded to Opus, in file order."""
    import av

    resamplers = {index: av.AudioResampler(format="flt", layout=out.layout.name, rate=48000)
                  for index, out in outputs.items()}
    samples = dict.fromkeys(outputs, 0)

    def encode(index: int, frame):
        # Timestamps count samples from the start: the audio starts with the video.
        if frame is not None:
            frame.pts, frame.time_base = samples[index], Fraction(1, 48000)
            samples[index] += frame.samples
        for encoded in outputs[index].encode(frame):
            yield encoded, outputs[index]

    for packet in source.demux(*source.streams.audio):
        for frame in packet.decode():
            for resampled in resamplers[packet.stream.index].resample(frame):
                yield from encode(packet.stream.index, resampled)
    for index in outputs:
        for resampled in resamplers[index].resample(None):
            yield from encode(index, resampled)
        yield from encode(index, None)


def check_encoder(codec: str, pix_fmt: str) -> None:
    """One clear line when this FFmpeg lacks the encoder or the encoder lacks the pixel format."""
    import av

    try:
        encoder = av.Codec(codec, "w")
    except (av.error.FFmpegError, ValueError):
        video = sorted(name for name in av.codecs_available
                       if any(key in name for key in ("264", "265", "hevc", "vp9", "av1")))
        raise OutputError(f"this FFmpeg (PyAV {av.__version__}) has no encoder {codec!r}; video encoders it has "
                          f"include: {', '.join(video)}") from None
    formats = [fmt.name for fmt in encoder.video_formats or []]
    if formats and pix_fmt not in formats:
        raise OutputError(f"{codec} cannot write pixel format {pix_fmt!r}; it takes: {', '.join(formats)}")


#: Tags the muxer writes itself (and would contradict if copied): left to it.
_MUXER_TAGS = {"encoder", "major_brand", "minor_version", "compatible_brands", "duration", "vendor_id", "alpha_mode"}


def copy_tags(source: dict, target) -> None:
    """Copy metadata (title, creation time, language, ...) where the output container can hold it."""
    for key, value in source.items():
        if key.lower() not in _MUXER_TAGS:
            target[key] = value


#: Containers that take only some codecs: their default video encoder and the audio codecs they hold.
WEBM_AUDIO = {"opus", "vorbis"}
SUBTITLE_CODECS = {"mp4": {"mov_text"}, "mov": {"mov_text"}, "ipod": {"mov_text"}, "webm": {"webvtt"},
                   "matroska": {"srt", "subrip", "ass", "ssa", "webvtt", "mov_text", "dvd_subtitle",
                                "hdmv_pgs_subtitle", "dvb_subtitle"}}


#: Where alpha goes, by output type: ProRes 4444 in QuickTime (what editors take), VP9 with alpha in
#: WebM and Matroska. MP4 and AVI have no codec with alpha that FFmpeg writes and players read.
ALPHA_CODECS = {".mov": "prores_ks", ".webm": "libvpx-vp9", ".mkv": "libvpx-vp9"}
#: Containers that hold chapters, and attached pictures (cover art), as FFmpeg writes them.
CHAPTER_FORMATS = {"mp4", "mov", "ipod", "matroska", "webm"}
#: QuickTime drops covers; Matroska keeps them as attachments, which PyAV cannot write; the iPod muxer (.m4v)
#: takes no picture stream (it refused the output as a whole: "'ipod' format does not support 'mjpeg' codec").
COVER_FORMATS = {"mp4"}
COVER_LEFT_OUT = "the cover picture (written to .mp4 only)"


def default_codec(path: Path, alpha: bool = False) -> str:
    """H.264 everywhere it goes; VP9 for WebM, which holds only VP8/VP9/AV1; with `alpha`, an encoder
    that keeps it where the container holds one (`ALPHA_CODECS`)."""
    if alpha and path.suffix.lower() in ALPHA_CODECS:
        return ALPHA_CODECS[path.suffix.lower()]
    return "libvpx-vp9" if path.suffix.lower() == ".webm" else "libx264"


def report_left_out(path: Path, dropped: list[str]) -> None:
    """One warning line for everything of the input that `path` does not get (named as the output is,
    not as its temporary file)."""
    if dropped:
        log.warning("%s leaves out %s", shown_path(path).name, "; ".join(dropped))


def copy_attachments(info: VideoInfo, out, dropped: list[str]) -> None:
    """The input's attachments (fonts, files) into a Matroska `out`, before its header; named elsewhere."""
    import av

    if not info.attachments:
        return
    if out.format.name != "matroska":
        dropped.append(f"{info.attachments} attachment{'s' * (info.attachments > 1)} (fonts or files: "
                       f"{Path(out.name).suffix} holds none; .mkv does)")
        return
    with av.open(str(info.path), metadata_errors="ignore") as source:
        for stream in source.streams:
            if stream.type == "attachment":
                out.add_attachment(stream.name or f"attachment{stream.index}", stream.mimetype or
                                   "application/octet-stream", bytes(stream.data))


def interlace_options(codec: str, field_order: int, options: dict[str, str]) -> dict[str, str] | None:
    """x264 options that code interlaced with the input's field order (None: the encoder cannot)."""
    if codec != "libx264":
        return None
    first = "tff=1" if field_order in (2, 4) else "bff=1"
    params = ":".join(p for p in (options.get("x264-params", ""), f"interlaced=1:{first}") if p)
    return {**options, "x264-params": params}


class VideoWriter:
    """Encodes RGB frames (H.264 by default, VP9 for WebM) and copies the audio of `info.path` alongside.

    Audio is copied packet for packet where the container takes its codec; WebM takes only Opus
    and Vorbis, so other audio is re-encoded to Opus there.

    Learns nothing from its frames: size, rate and time base come from `info`, and a frame of
    another size is refused rather than silently rescaled.
    """

    def __init__(self, path: str | Path, info: VideoInfo, crf: int = 18, preset: str = "veryfast",
                 copy_audio: bool = True, codec: str | None = None, pix_fmt: str | None = None,
                 options: dict[str, str] | None = None, container_options: dict[str, str] | None = None):
        """`options`: encoder options on top of `encoder_options` (what a segment's part needs);
        `container_options`: the muxer's."""
        import av

        self.path = Path(path)
        self.info = info
        dropped = list(info.left_out)
        codec = codec or default_codec(self.path, info.alpha)
        if info.alpha and pix_fmt is None and codec == default_codec(self.path) and self.path.suffix.lower() not in (
                ALPHA_CODECS):
            dropped.append(f"the alpha channel ({self.path.suffix} holds none: write .mov for ProRes 4444 or .webm "
                           "for VP9 with alpha)")
            info = replace(info, alpha=False)
        pix_fmt = pix_fmt or default_pix_fmt(info, codec, dropped)
        check_encoder(codec, pix_fmt)
        self.keeps_alpha = any(component.is_alpha for component in av.VideoFormat(pix_fmt).components)
        if info.alpha and not self.keeps_alpha and not any("alpha" in d for d in dropped):
            dropped.append(f"the alpha channel (pixel format {pix_fmt} holds none)")
        try:
            self._out = av.open(str(self.path), mode="w", options=container_options or {})
        except (av.error.FFmpegError, ValueError) as exc:
            raise OutputError(f"cannot create {shown_path(self.path)} ({exc})") from exc
        try:
            stream = self._out.add_stream(codec, rate=info.rate)
            stream.width, stream.height = info.width, info.height
            stream.pix_fmt = pix_fmt
            copy_tags(info.tags, self._out.metadata)
            copy_tags(info.video_tags, stream.metadata)
            self.layout = yuv_layout(info.color) if pix_fmt == "yuv420p" else "rgb24"
            # Tag what the samples are: the input's colour description, which write() converts to.
            context = stream.codec_context
            context.colorspace, context.color_primaries, context.color_trc = (
                info.color.matrix, info.color.primaries, info.color.transfer)
            context.color_range = FULL if info.color.full_range else LIMITED
            self._swscale = info.color.swscale()
            options = {**encoder_options(codec, crf, preset), **(options or {})}
            if codec == "prores_ks":
                options.setdefault("profile", "4444" if self.keeps_alpha or "444" in pix_fmt else "hq")
            if info.field_order > 1:  # interlaced: code it so, with the input's field order, or say it is not
                interlaced = interlace_options(codec, info.field_order, options)
                if interlaced is None:
                    dropped.append(f"the interlaced flag ({codec} writes progressive frames)")
                else:
                    options = interlaced
                    context.field_order = info.field_order
            stream.options = options
            # AVI counts frames, not time: given the input's time base it claimed 2400 frames at
            # 600 fps for a 120-frame clip (measured), so there timestamps become frame numbers.
            self._time_base = 1 / Fraction(info.rate) if self._out.format.name == "avi" else info.time_base
            stream.time_base = stream.codec_context.time_base = self._time_base
            # Open the encoder now: a listed hardware encoder without its driver fails here, before
            # any frame is decoded, rather than at the first frame written.
            stream.codec_context.open()
            self._video = stream
            if info.chapters:
                if self._out.format.name in CHAPTER_FORMATS:
                    self._out.set_chapters(info.chapters)
                else:
                    dropped.append(f"{len(info.chapters)} chapters ({self.path.suffix} holds none)")
            copy_attachments(info, self._out, dropped)
            self._covers = info.covers if self._out.format.name in COVER_FORMATS else 0
            if info.covers and not self._covers:
                dropped.append(COVER_LEFT_OUT)
            self._audio_in = None
            if (copy_audio and info.audio_streams) or info.subtitle_streams or self._covers:
                self._audio_in = av.open(str(info.path), metadata_errors="ignore")
                self._audio_packets = self._copied_streams(self._audio_in, copy_audio)
                self._pending_audio = None
            report_left_out(self.path, dropped)
        except Exception as exc:
            self._out.close()
            if isinstance(exc, av.error.FFmpegError | ValueError):
                raise OutputError(f"cannot set up {shown_path(self.path)} ({exc})") from exc
            raise
        self.frames_written = 0
        self._last_pts = -1
        self._audio_ends_with_video = False

    def write(self, image: np.ndarray, pts: int | None, alpha: np.ndarray | None = None) -> None:
        """`image`: H x W x 3 RGB, or (where `layout` is yuv420p) H * 3/2 x W yuv420p planes;
        `alpha`: H x W, written beside the colour where the output keeps alpha (`keeps_alpha`)."""
        import av

        height, width = self.info.height, self.info.width
        if alpha is not None and self.keeps_alpha and image.shape == (height, width, 3):
            deep = image.dtype != np.uint8
            rgba = np.dstack([image, alpha.astype(image.dtype) if alpha.dtype == image.dtype else (
                (alpha.astype(np.uint16) * 257) if deep else (alpha >> 8).astype(np.uint8))])
            frame = av.VideoFrame.from_ndarray(rgba, format="rgba64le" if deep else "rgba").reformat(
                format=self._video.pix_fmt, dst_colorspace=self._swscale["colorspace"],
                dst_color_range=self._swscale["range"], interpolation=self._swscale["interpolation"])
        elif image.shape == (height, width, 3):
            rgb_format = "rgb24" if image.dtype == np.uint8 else "rgb48le"
            frame = av.VideoFrame.from_ndarray(image, format=rgb_format).reformat(
                format=self._video.pix_fmt, dst_colorspace=self._swscale["colorspace"],
                dst_color_range=self._swscale["range"], interpolation=self._swscale["interpolation"])
        elif self.layout.startswith("yuv420p") and image.shape == (height * 3 // 2, width):
            frame = av.VideoFrame.from_ndarray(image, format="yuv420p")
        else:
            raise OutputError(f"frame of shape {image.shape} does not match the video ({height}x{width}x3)")
        # Keep the input's timestamps (variable frame rate survives); repair missing or
        # non-increasing ones, which the encoder would reject.
        if pts is not None and self._time_base != self.info.time_base:
            pts = round(pts * self.info.time_base / self._time_base)
        if pts is None or pts <= self._last_pts:
            pts = self._last_pts + 1
        frame.pts = pts
        self._last_pts = pts
        frame.time_base = self._time_base
        for packet in self._video.encode(frame):
            self._mux_packet(packet)
        self.frames_written += 1

    def end_audio_with_video(self) -> None:
        """Copy audio only up to the end of the last frame written, not to the end of the input.

        For a conversion stopped early (Ctrl-C, SIGTERM): otherwise the file would hold the whole
        input's audio behind a shorter video, and players would report the input's duration.
        """
        self._audio_ends_with_video = True

    def video_end(self) -> float:
        """Seconds at which the last written frame ends (its timestamp plus one frame)."""
        return float((self._last_pts + 1 / (self.info.rate * self._time_base)) * self._time_base)

    def _mux_packet(self, packet) -> None:
        """A video packet, after the audio that plays before it."""
        if packet.pts is not None:
            self._mux_audio_until(float(packet.pts * packet.time_base))
        self._out.mux(packet)

    def _copied_streams(self, source, copy_audio: bool):
        """Output streams for `source`'s audio and subtitles, and a generator of (packet, output stream)
        in file order. Subtitles go only where this container takes their codec (said in the log)."""
        audio = list(source.streams.audio) if copy_audio else []
        subtitles = []
        takes = SUBTITLE_CODECS.get(self._out.format.name, set())
        for stream in source.streams.subtitles:
            if stream.codec_context.name in takes:
                subtitles.append(stream)
            else:
                log.warning("subtitle stream %d (%s) left out: %s output does not hold it", stream.index,
                            stream.codec_context.name, self.path.suffix)
        transcode = self._out.format.name == "webm" and any(s.codec_context.name not in WEBM_AUDIO for s in audio)
        if transcode and subtitles:
            log.warning("subtitles left out: the audio is being re-encoded for WebM")
            subtitles = []
        covers = [s for s in source.streams.video if is_cover(s)] if self._covers else []
        outputs = {}
        for stream in covers:
            outputs[stream.index] = out = self._out.add_stream_from_template(stream)
            out.disposition = stream.disposition
        for stream in sorted(audio + subtitles, key=lambda s: s.index):  # in the input's order
            if transcode and stream.type == "audio":
                outputs[stream.index] = out = self._out.add_stream("libopus", rate=48000)
                out.layout = "mono" if stream.codec_context.channels == 1 else "stereo"
            else:
                outputs[stream.index] = out = self._out.add_stream_from_template(stream)
            copy_tags(dict(stream.metadata), out.metadata)
        if transcode:
            log.info("re-encoding the audio to Opus: WebM holds only Opus and Vorbis")
            return _opus_packets(source, {s.index: outputs[s.index] for s in audio})
        copied = [*covers, *audio, *subtitles]
        if not copied:  # demux() of no stream would read every stream
            return iter(())
        return ((packet, outputs[packet.stream.index]) for packet in source.demux(*copied))

    def _mux_audio_until(self, limit: float | None) -> None:
        """Interleave: send the audio packets that start by `limit` seconds (all of them for None)."""
        if self._audio_in is None:
            return
        while True:
            pending = self._pending_audio or next(self._audio_packets, None)
            if pending is None:
                self._audio_in.close()
                self._audio_in = None
                return
            audio, stream = pending
            if audio.size == 0:  # demuxer flush packets carry no data
                self._pending_audio = None
                continue
            if limit is not None and audio.dts is not None and float(audio.dts * audio.time_base) > limit:
                self._pending_audio = pending
                return
            self._pending_audio = None
            audio.stream = stream
            self._out.mux(audio)

    def close(self) -> None:
        """Flush the encoder, copy the remaining audio and finalise the container."""
        try:
            for packet in self._video.encode(None):
                self._mux_packet(packet)
            self._mux_audio_until(self.video_end() if self._audio_ends_with_video else None)
        finally:
            if self._audio_in is not None:
                self._audio_in.close()
            self._out.close()

    def abort(self) -> None:
        """Close without flushing (the file is about to be deleted)."""
        if self._audio_in is not None:
            self._audio_in.close()
        try:
            self._out.close()
        except Exception:  # closing a half-written container can fail; the file is discarded anyway
            log.debug("closing aborted output failed", exc_info=True)
