"""Several encoders for one output: when the encoder, not the stylizer, bounds a file's speed.

One x264 at 1080p on the textures a stylizer makes runs well below what a GPU stylizes (issue #25:
the encoder measured on real stylized frames, not on one frame repeated). Chunked encoders such as
Av1an feed many cores by encoding pieces of one output at once; this does the same inside one
stream, with one decoder and one stylizer:

* the stream's frames are cut, in order, into chunks of `chunk_frames`; each chunk is encoded into
  a part file of its own (it starts with a keyframe of its own encoder) by one of `encoders` threads;
* the parts are joined without re-encoding, with the source's audio, subtitles, chapters and tags
  copied once (`parts.join_segments`): the result has the frames and timestamps of a one-encoder
  run, and its joins are as hidden as a segment's (`parts.part_encoder_options`).

Threads, not processes: PyAV lets go of the GIL while x264 encodes and while swscale converts, so
two encoders in two threads ran 1.43x one on two busy cores (and a process would have to be sent
every frame). `benchmarks/encoders.py` measures both.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..config import ConvertConfig
from ..errors import OutputError, PipelineError
from ..io.sinks import Sink
from ..io.sources import Frame
from ..io.video import VideoInfo, VideoWriter, default_codec
from .parts import join_segments, part_encoder_options, part_muxer_options

log = logging.getLogger(__name__)

#: Encoders whose parts join into one stream (the same parameter sets in every part). Hardware
#: encoders are left to one session: consumer cards cap concurrent NVENC sessions.
CHUNKED_CODECS = {"libx264", "libx265"}
#: Containers a join writes as a single run would (AVI counts frames, GIF is not a codec stream).
CHUNKED_SUFFIXES = {".mp4", ".m4v", ".mov", ".mkv"}
#: Frames waiting for an encoder, at most, in bytes: the stylizer waits beyond this.
BUFFER_BYTES = 1 << 30
#: A chunk's length in seconds, at most and at least: each chunk adds a keyframe (x264's own
#: interval is 250 frames), and the buffer holds about one chunk per encoder.
CHUNK_SECONDS = (1.0, 4.0)
#: Cores one 1080p x264 instance keeps busy at veryfast (its frame threads): auto gives each encoder these.
CORES_PER_ENCODER = 4
AUTO_MAX_ENCODERS = 8


def encoder_count(setting: int | str, stylizer: object) -> int:
    """`--encoders`: a number, or auto. Auto is one encoder where the stylizer is slower than one
    encoder anyway (on a CPU: 12 fps against x264's 160 at 640x360, benchmarks/encoders.py), and on a
    GPU as many as the cores feed (`CORES_PER_ENCODER` each): the model stylizes 1080p at over 500 fps
    on an H100, one encoder managed 65."""
    if setting != "auto":
        return int(setting)
    device = getattr(stylizer, "device", None)
    if getattr(device, "type", None) != "cuda":
        return 1
    return max(1, min(AUTO_MAX_ENCODERS, (os.cpu_count() or 1) // CORES_PER_ENCODER))


def chunkable(dst: Path, info: VideoInfo, config: ConvertConfig) -> str | None:
    """Why `dst` must be written by one encoder, or None if chunks can be joined into it unchanged."""
    codec = config.codec or default_codec(dst, info.alpha)
    if codec not in CHUNKED_CODECS:
        return f"{codec} is written by one encoder"
    if dst.suffix.lower() not in CHUNKED_SUFFIXES:
        return f"{dst.suffix} is written by one encoder"
    if info.alpha:  # kept, or named as one writer names it
        return "the alpha channel is handled by one encoder"
    return None


def chunking(info: VideoInfo, encoders: int, layout: str) -> tuple[int, int]:
    """(frames per chunk, frames the buffer holds at most). About one chunk per encoder fits in
    `BUFFER_BYTES`, within `CHUNK_SECONDS`; where even the shortest chunks do not fit (8K), the buffer
    stays within its bytes and the encoders wait for frames instead."""
    pixels = info.width * info.height * (1.5 if layout.startswith("yuv420p") else 3)
    frame_bytes = pixels * (2 if info.bit_depth > 8 else 1)
    fps = float(info.rate) or 25.0
    low, high = (max(2, round(seconds * fps)) for seconds in CHUNK_SECONDS)
    fits = int(BUFFER_BYTES // frame_bytes)
    chunk = min(max(fits // encoders, low), high)
    return chunk, max(2, min(chunk * encoders, fits))


class _Chunk:
    """One part: its frames in a queue, filled by the stream's sink thread, emptied by an encoder thread."""

    def __init__(self, index: int, folder: Path):
        self.index, self.path = index, folder / f"part-{index:05d}.mp4"
        self.frames: queue.SimpleQueue = queue.SimpleQueue()
        self.count = 0


class ChunkedSink(Sink):
    """A file sink that encodes chunks of the stream in parallel and joins them into `path` on close.

    `src` is the input whose audio, subtitles, chapters and tags the output gets; the parts go to
    `folder` (beside the output, removed by the caller).
    """

    _END = None

    def __init__(self, src: Path, path: Path, info: VideoInfo, config: ConvertConfig, encoders: int, folder: Path):
        self.src, self.path, self.folder = src, Path(path), folder
        self._rate, self._time_base = info.rate, info.time_base
        # A part is the whole output less what the join copies from the source.
        self._part_info = replace(info, audio_streams=0, subtitle_streams=0, tags={}, video_tags={}, alpha=False,
                                  chapters=[], covers=0, left_out=(), attachments=0)
        self.config = replace(config, codec=config.codec or default_codec(path))  # the parts' codec, named
        threads = max(1, (os.cpu_count() or 1) // encoders)
        self._options = {**part_encoder_options(self.config, path), "threads": str(threads)}
        first = self._writer(_Chunk(0, folder))  # the encoder opens now: a bad codec or pixel format fails at once
        self.layout = first.layout
        self.chunk_frames, buffered = chunking(info, encoders, self.layout)
        self._room = threading.BoundedSemaphore(buffered)
        self._pool = ThreadPoolExecutor(encoders, thread_name_prefix="rtstyle-encoder")
        self._chunks: list[_Chunk] = []
        self._futures: list[Future] = []
        self._stop = threading.Event()
        self._failure: BaseException | None = None  # the first encoder's error (not a _Stopped)
        self._first_writer: VideoWriter | None = first
        self._last_pts = -1
        self._audio_until: float | None = None
        self.frames_written = 0
        log.info("%d encoders, chunks of %d frames", encoders, self.chunk_frames)

    def _writer(self, chunk: _Chunk) -> VideoWriter:
        config = self.config
        return VideoWriter(chunk.path, self._part_info, crf=config.crf, preset=config.preset, copy_audio=False,
                           codec=config.codec, pix_fmt=config.pix_fmt, options=self._options,
                           container_options=part_muxer_options(self._time_base))

    def write(self, frame: Frame, image: np.ndarray) -> None:
        self._raise_failure()
        if not self._chunks or self._chunks[-1].count == self.chunk_frames:
            self._start_chunk()
        # Timestamps repaired here, in stream order, as one writer would: each part sees increasing ones.
        pts = frame.pts if frame.pts is not None and frame.pts > self._last_pts else self._last_pts + 1
        self._last_pts = pts
        while not self._room.acquire(timeout=0.5):
            self._raise_failure()
        chunk = self._chunks[-1]
        chunk.frames.put((image, pts))
        chunk.count += 1
        self.frames_written += 1

    def _start_chunk(self) -> None:
        if self._chunks:
            self._chunks[-1].frames.put(self._END)
        chunk = _Chunk(len(self._chunks), self.folder)
        self._chunks.append(chunk)
        writer, self._first_writer = self._first_writer, None
        future = self._pool.submit(self._encode, chunk, writer)
        future.add_done_callback(self._note_failure)
        self._futures.append(future)

    def _encode(self, chunk: _Chunk, writer: VideoWriter | None) -> int:
        writer = writer or self._writer(chunk)
        try:
            while (item := chunk.frames.get()) is not self._END:
                if self._stop.is_set():
                    raise _Stopped
                image, pts = item
                writer.write(image, pts)
                self._room.release()
            writer.close()
        except BaseException:
            writer.abort()
            raise
        return writer.frames_written

    def _note_failure(self, future: Future) -> None:
        error = None if future.cancelled() else future.exception()
        if error is not None and not isinstance(error, _Stopped) and self._failure is None:
            self._failure = error

    def _raise_failure(self) -> None:
        """Checked on every frame: one attribute, whatever the number of chunks so far."""
        if self._failure is not None:
            raise PipelineError(f"encoder failed: {self._failure}") from self._failure

    def end_early(self) -> None:
        self._audio_until = float((self._last_pts + 1 / (self._rate * self._time_base)) * self._time_base)

    def close(self) -> None:
        """Wait for every part, then join them into `path`."""
        if self._chunks:
            self._chunks[-1].frames.put(self._END)
        self._pool.shutdown(wait=True)
        if self._first_writer is not None:  # no frame came
            self._first_writer.abort()
            return
        written = [future.result() for future in self._futures]  # an encoder's error, raised as it was
        parts = [chunk.path for chunk in self._chunks]
        joined = join_segments(self.src, parts, self.path, self.config, audio_until=self._audio_until)
        if joined != sum(written) or joined != self.frames_written:
            raise OutputError(f"joining {len(parts)} encoded chunks gave {joined} frames, not {self.frames_written}")

    def abort(self) -> None:
        self._stop.set()
        for chunk in self._chunks:
            chunk.frames.put(self._END)
        self._pool.shutdown(wait=True, cancel_futures=True)
        if self._first_writer is not None:
            self._first_writer.abort()


class _Stopped(Exception):
    """An encoder thread told to stop (the stream failed)."""
