"""What goes in comes out: memory that stays bounded, and every stream kept or named in one warning."""

from __future__ import annotations

import tracemalloc
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rtstyle.io.gif import PALETTE_SAMPLES, GifWriter
from rtstyle.io.synthetic import scene_frame
from rtstyle.io.video import VideoInfo


def clip_info(path: Path, width: int, height: int, frames: int, fps: int = 30) -> VideoInfo:
    return VideoInfo(path, width, height, Fraction(fps), Fraction(1, fps), frames, frames / fps, 0, 0)


def write_gif(path: Path, frames: int, width: int = 160, height: int = 96) -> GifWriter:
    """The scene at 30 fps, its last quarter turned red: colours only the end of the clip has."""
    writer = GifWriter(path, clip_info(path, width, height, frames))
    for index in range(frames):
        image = scene_frame(index, width, height)
        if index >= frames * 3 // 4:
            image = image.copy()
            image[..., 0], image[..., 1:] = 200 + image[..., 0] // 5, image[..., 1:] // 6
        writer.write(image, index)
    writer.close()
    return writer


def test_gif_streams_with_a_palette_sampled_across_the_clip(tmp_path):
    """Frames go to a lossless spool, not memory: peak memory does not grow with the clip, and the palette
    still sees the colours of its end."""
    peaks = {}
    for frames in (120, 600):
        tracemalloc.start()
        writer = write_gif(tmp_path / f"{frames}.gif", frames)
        peaks[frames] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert writer.frames_written == frames and writer.held_peak <= 2 * PALETTE_SAMPLES
        with Image.open(tmp_path / f"{frames}.gif") as gif:
            assert gif.n_frames == frames // 2  # 15 fps of 30
            durations = []
            for index in range(gif.n_frames):
                gif.seek(index)
                durations.append(gif.info["duration"])
            assert sum(durations) == pytest.approx(frames / 30 * 1000, abs=20)
            gif.seek(gif.n_frames - 1)
            red = np.asarray(gif.convert("RGB")).astype(int)
        assert red[..., 0].mean() > 190 and red[..., 1:].mean() < 50  # the end's colours are in the palette
    # 5 times the frames (14 MB of them held, as before): the same peak, within 1.5 MB
    assert peaks[600] < peaks[120] + 1.5e6, peaks
    assert not list(tmp_path.glob("**/frames.mkv"))


def photo_folder(folder: Path, photos: int, video: bool = False) -> Path:
    """`photos` 1024 x 768 JPEGs of the scene at different moments (and a clip, and a file that is no picture)."""
    folder.mkdir()
    for index in range(photos):
        Image.fromarray(scene_frame(index * 7, 1024, 768)).save(folder / f"photo{index:03d}.jpg", quality=90)
    if video:
        from rtstyle.io.synthetic import write_clip

        write_clip(folder / "clip.mp4", seconds=1.0, width=320, height=180, fps=24, audio=False)
    (folder / "notes.png").write_bytes(b"not a picture")
    return folder


def test_training_photos_are_held_small_and_within_a_budget(tmp_path):
    """Content photos are kept at the size crops need, in 8 bits, up to a budget; the rest are read again
    when a crop needs them, and give the crops the held ones would."""
    import torch

    from rtstyle.train.data import RandomCrops, crop_short_side, load_folder

    folder = photo_folder(tmp_path / "content", 6, video=True)
    short = crop_short_side(64)
    held = load_folder(folder, short_side=short)
    lean = load_folder(folder, short_side=short, budget=1_000_000)
    assert len(held.images) == len(lean.images) == 6 + 16 and held.names == lean.names
    assert [name for name, _ in held.skipped] == ["notes.png"]
    assert all(min(image.shape[:2]) <= short and image.dtype == np.uint8 for image in held.images)
    assert held.images.held_bytes == sum(image.nbytes for image in held.images)  # all of it, 8 bits, small
    assert held.images.held_bytes < 6 * 160 * 120 * 3 + 16 * 180 * 320 * 3
    assert lean.images.held_bytes <= 1_000_000
    for a, b in zip(held.images, lean.images):  # photos read again, video frames from their lossless copies
        assert np.array_equal(a, b)
    first = RandomCrops(held.images, 64, seed=3).batch(6)
    assert torch.equal(first, RandomCrops(lean.images, 64, seed=3).batch(6))


def test_training_memory_does_not_grow_with_the_folder(tmp_path):
    from rtstyle.train.data import RandomCrops, crop_short_side, load_folder

    peaks = {}
    for photos in (4, 16):
        folder = photo_folder(tmp_path / f"content{photos}", photos)
        tracemalloc.start()
        images = load_folder(folder, short_side=crop_short_side(64), budget=300_000).images
        RandomCrops(images, 64, seed=0).batch(8)
        peaks[photos] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    # Held whole (as before: 8 bits and float), 16 photos were 16 x 12 MB; here one photo's decoding and
    # the budget.
    assert peaks[16] < peaks[4] + 1_000_000, peaks


# --- Nothing dropped without a word -------------------------------------------------------------------------

def invert(images):
    """A stand-in stylizer that shows where the colour went: every frame inverted."""
    return [255 - image for image in images]


ALPHA_RAMP = np.tile(np.linspace(0, 255, 64).astype(np.uint8), (48, 1))  # transparent left, opaque right


def encode(path: Path, codec: str, pix_fmt: str, frames: int = 12, alpha: bool = False,
           options: dict | None = None) -> Path:
    """The scene (64 x 48, 12 fps) encoded by `codec` in `pix_fmt`, with the alpha ramp where asked."""
    import av

    with av.open(str(path), "w") as out:
        video = out.add_stream(codec, rate=12)
        video.width, video.height, video.pix_fmt = 64, 48, pix_fmt
        video.options = options or {}
        for index in range(frames):
            rgb = scene_frame(index, 64, 48, 12)
            frame = av.VideoFrame.from_ndarray(np.dstack([rgb, ALPHA_RAMP]), format="rgba") if alpha else \
                av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame = frame.reformat(format=pix_fmt)
            frame.pts, frame.time_base = index, Fraction(1, 12)
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
    return path


def decoded(path: Path) -> list:
    """The first video stream's frames, through libvpx where it is VP9 with alpha (as players decode it)."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        decoder = stream.codec_context
        if decoder.name == "vp9" and any(v == "1" for k, v in stream.metadata.items() if k.lower() == "alpha_mode"):
            decoder = av.CodecContext.create("libvpx-vp9", "r")
        return [frame for packet in container.demux(stream) for frame in decoder.decode(packet)]


def left_out_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelname == "WARNING" and "leaves out" in r.getMessage()]


@pytest.mark.parametrize("source, codec, pix_fmt", [("qtrle.mov", "qtrle", "argb"), ("png.mov", "png", "rgba"),
                                                    ("vp9.webm", "libvpx-vp9", "yuva420p")])
@pytest.mark.parametrize("output, made_by", [(".mov", "prores"), (".webm", "vp9")])
def test_alpha_is_carried_through(source, codec, pix_fmt, output, made_by, tmp_path, caplog):
    """The colour is stylized and the alpha kept, into a codec and container that hold alpha."""
    import av

    from rtstyle.config import ConvertConfig
    from rtstyle.jobs.convert import convert_file

    src = encode(tmp_path / source, codec, pix_fmt, alpha=True)
    dst = tmp_path / f"out{output}"
    convert_file(src, dst, invert, ConvertConfig())
    frames = decoded(dst)
    assert len(frames) == 12 and frames[0].format.name.startswith("yuva")
    with av.open(str(dst)) as made:
        assert made.streams.video[0].codec_context.name == made_by
    rgba = frames[5].to_ndarray(format="rgba").astype(int)
    assert np.abs(rgba[..., 3] - ALPHA_RAMP).mean() < 3  # the alpha, as it was
    opaque = ALPHA_RAMP > 128
    expected = 255 - scene_frame(5, 64, 48, 12).astype(int)
    assert np.abs(rgba[..., :3] - expected)[opaque].mean() < 8  # the colour, stylized (inverted)
    # libvpx's alpha is 4:2:0: an RGBA source loses its full chroma there, and says so
    lost = [] if output == ".mov" or pix_fmt == "yuva420p" else [
        "out.webm leaves out 4:4:4 chroma (libvpx-vp9 with alpha writes 4:2:0)"]
    assert left_out_lines(caplog) == lost


def test_what_vp9_alpha_cannot_hold_of_prores_4444_is_named(tmp_path, caplog):
    from rtstyle.config import ConvertConfig
    from rtstyle.jobs.convert import convert_file

    src = encode(tmp_path / "in.mov", "prores_ks", "yuva444p10le", alpha=True, options={"profile": "4444"})
    convert_file(src, tmp_path / "out.mkv", invert, ConvertConfig())
    assert left_out_lines(caplog) == ["out.mkv leaves out 4:4:4 chroma (libvpx-vp9 with alpha writes 4:2:0); "
                                      "12-bit depth (libvpx-vp9 with alpha writes 8 bits)"]  # ProRes decodes at 12
    assert decoded(tmp_path / "out.mkv")[0].format.name == "yuva420p"


def test_alpha_where_the_output_cannot_hold_it_is_named(tmp_path, caplog):
    from rtstyle.config import ConvertConfig
    from rtstyle.jobs.convert import convert_file

    src = encode(tmp_path / "qtrle.mov", "qtrle", "argb", alpha=True)
    convert_file(src, tmp_path / "out.mp4", invert, ConvertConfig())
    lines = left_out_lines(caplog)
    assert len(lines) == 1 and lines[0].startswith("out.mp4 leaves out the alpha channel") and ".mov" in lines[0]


@pytest.mark.parametrize("pix_fmt, output", [("yuv422p", ".mp4"), ("yuv444p", ".mkv"), ("yuv422p", ".webm"),
                                             ("yuv422p10le", ".mov")])
def test_chroma_is_kept(pix_fmt, output, tmp_path, caplog):
    from rtstyle.config import ConvertConfig
    from rtstyle.jobs.convert import convert_file

    src = encode(tmp_path / "in.mkv", "libx264", pix_fmt)
    convert_file(src, tmp_path / f"out{output}", invert, ConvertConfig())
    assert decoded(tmp_path / f"out{output}")[0].format.name == pix_fmt
    assert not left_out_lines(caplog)


def test_the_interlaced_flag_is_kept_or_named(tmp_path, caplog):
    import av

    from rtstyle.config import ConvertConfig
    from rtstyle.jobs.convert import convert_file

    src = encode(tmp_path / "in.mkv", "libx264", "yuv420p", options={"x264-params": "interlaced=1:bff=1"})
    convert_file(src, tmp_path / "out.mkv", invert, ConvertConfig())
    with av.open(str(tmp_path / "out.mkv")) as made:
        assert made.streams.video[0].codec_context.field_order == 3  # bottom field first, as the input
        assert next(made.decode(video=0)).interlaced_frame
    assert not left_out_lines(caplog)
    convert_file(src, tmp_path / "out.webm", invert, ConvertConfig())
    assert left_out_lines(caplog) == ["out.webm leaves out the interlaced flag (libvpx-vp9 writes progressive frames)"]


def extras_clip(path: Path, chapters: bool = False, cover: bool = False, second: bool = False) -> Path:
    """The scene with an AAC track, and chapters, a PNG cover picture or a second video stream."""
    import av

    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=12)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        other = out.add_stream("libx264", rate=12) if second else None
        if other is not None:
            other.width, other.height, other.pix_fmt = 32, 32, "yuv420p"
        audio = out.add_stream("aac", rate=44100)
        audio.layout = "stereo"
        if chapters:
            out.set_chapters([{"id": n + 1, "start": n * 1000, "end": (n + 1) * 1000, "time_base": Fraction(1, 1000),
                               "metadata": {"title": title}} for n, title in enumerate(["Opening", "Ending"])])
        if cover:
            picture = out.add_stream("png")
            picture.width, picture.height, picture.pix_fmt = 32, 32, "rgb24"
            picture.disposition = av.stream.Disposition.attached_pic
            art = av.VideoFrame.from_ndarray(np.full((32, 32, 3), (200, 30, 60), np.uint8), format="rgb24")
            for packet in [*picture.encode(art), *picture.encode(None)]:
                out.mux(packet)
        for index in range(24):
            for stream, size in ((video, (64, 48)), (other, (32, 32))):
                if stream is not None:
                    frame = av.VideoFrame.from_ndarray(scene_frame(index, *size, 12), format="rgb24")
                    frame.pts, frame.time_base = index, Fraction(1, 12)
                    out.mux(stream.encode(frame))
        for stream in (video, other):
            if stream is not None:
                out.mux(stream.encode(None))
        for start in range(0, 2 * 44100, 1024):
            sound = av.AudioFrame.from_ndarray(np.zeros((2, 1024), np.float32), format="fltp", layout="stereo")
            sound.sample_rate, sound.pts, sound.time_base = 44100, start, Fraction(1, 44100)
            out.mux(audio.encode(sound))
        out.mux(audio.encode(None))
    return path


def chapter_titles(path: Path) -> list[str]:
    import av

    with av.open(str(path)) as container:
        return [chapter["metadata"].get("title") for chapter in container.chapters()]


def test_chapters_are_copied(tmp_path, caplog):
    from rtstyle.config import ConvertConfig
    from rtstyle.jobs.convert import convert_file

    src = extras_clip(tmp_path / "in.mkv", chapters=True)
    for output in (".mkv", ".mp4", ".webm"):
        convert_file(src, tmp_path / f"out{output}", invert, ConvertConfig())
        assert chapter_titles(tmp_path / f"out{output}") == ["Opening", "Ending"]
    assert not left_out_lines(caplog)
    convert_file(src, tmp_path / "out.avi", invert, ConvertConfig())
    assert left_out_lines(caplog) == ["out.avi leaves out 2 chapters (.avi holds none)"]


def test_the_cover_picture_is_copied(tmp_path, caplog):
    import av

    from rtstyle.config import ConvertConfig
    from rtstyle.jobs.convert import convert_file

    src = extras_clip(tmp_path / "in.mp4", cover=True)
    convert_file(src, tmp_path / "out.mp4", invert, ConvertConfig())

    def cover(path):
        with av.open(str(path)) as container:
            streams = [s for s in container.streams.video if s.disposition & av.stream.Disposition.attached_pic]
            return [bytes(p) for p in container.demux(*streams) if p.size] if streams else []

    assert cover(tmp_path / "out.mp4") == cover(src) != []
    with av.open(str(tmp_path / "out.mp4")) as made:
        assert [s.type for s in made.streams] == ["video", "audio", "video"]
        assert sum(1 for _ in made.decode(video=0)) == 24
    assert not left_out_lines(caplog)
    for suffix in (".mkv", ".m4v"):  # the iPod muxer takes no picture stream: the film is written, the cover named
        caplog.clear()
        made = convert_file(src, tmp_path / f"out{suffix}", invert, ConvertConfig())
        assert made.frames == 24 and cover(made.output) == []
        assert left_out_lines(caplog) == [f"out{suffix} leaves out the cover picture (written to .mp4 only)"]


def test_a_second_video_stream_is_named(tmp_path, caplog):
    from rtstyle.config import ConvertConfig
    from rtstyle.jobs.convert import convert_file

    src = extras_clip(tmp_path / "in.mkv", second=True)
    convert_file(src, tmp_path / "out.mkv", invert, ConvertConfig())
    assert left_out_lines(caplog) == ["out.mkv leaves out video stream 1 (h264 32x32)"]


def test_every_frame_of_an_animated_webp(tmp_path, caplog):
    from rtstyle.config import ConvertConfig
    from rtstyle.jobs.convert import convert_file

    frames = [Image.fromarray(np.dstack([scene_frame(i * 10, 64, 48), ALPHA_RAMP])) for i in range(4)]
    src = tmp_path / "in.webp"
    frames[0].save(src, save_all=True, append_images=frames[1:], duration=[100, 200, 300, 400], loop=3, lossless=True)
    for output in ("out.webp", "out.png"):
        result = convert_file(src, tmp_path / output, invert, ConvertConfig())
        assert result.frames == 4
        with Image.open(tmp_path / output) as made:
            assert made.n_frames == 4 and made.info.get("loop") == 3
            durations = []
            for index in range(4):
                made.seek(index)
                made.load()
                durations.append(made.info.get("duration"))
                pixels = np.asarray(made.convert("RGBA")).astype(int)
                assert np.abs(pixels[..., 3] - ALPHA_RAMP).mean() < 2
                opaque = ALPHA_RAMP > 128
                assert np.abs(pixels[..., :3] - (255 - scene_frame(index * 10, 64, 48).astype(int)))[opaque].mean() < 8
            assert durations == [100, 200, 300, 400]
    assert not left_out_lines(caplog)
    convert_file(src, tmp_path / "out.jpg", invert, ConvertConfig())
    assert left_out_lines(caplog) == ["out.jpg leaves out 3 of the 4 frames of in.webp (.jpg holds one picture; "
                                      "write .webp or .png to keep them all); the alpha channel (.jpg holds none; "
                                      "write .png, .webp or .tif to keep it)"]


# --- Pictures too large ----------------------------------------------------------------------------------------

def png_header(path: Path, width: int, height: int) -> Path:
    """A PNG that claims `width` x `height` (its header alone: what a decompression bomb shows first)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))
    return path


def test_a_picture_above_the_limit_is_refused_in_one_line(tmp_path, capsys):
    import warnings

    from rtstyle.cli.main import main
    from rtstyle.errors import InputError
    from rtstyle.io.images import MAX_PIXELS, probe_image, read_image

    accepted = png_header(tmp_path / "100mp.png", 10000, 10000)  # above Pillow's 89 MP warning, below the limit
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Pillow's DecompressionBombWarning would raise here
        assert probe_image(accepted) == (10000, 10000)
    huge = png_header(tmp_path / "huge.png", 20000, 20000)  # above twice Pillow's limit too
    assert 20000 * 20000 > MAX_PIXELS
    with pytest.raises(InputError, match="400 megapixels, above the limit of 268"):
        read_image(huge)
    code = main(["stylize", str(huge), "-o", str(tmp_path / "out.png"), "--model", "fast"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "above the limit" in err
    assert "DecompressionBomb" not in err and not (tmp_path / "out.png").exists()


def test_a_picture_s_alpha_where_the_output_cannot_hold_it_is_named(tmp_path, caplog):
    from rtstyle.config import ConvertConfig
    from rtstyle.jobs.convert import convert_file

    src = tmp_path / "in.png"
    Image.fromarray(np.dstack([scene_frame(0, 64, 48), ALPHA_RAMP])).save(src)
    convert_file(src, tmp_path / "out.png", invert, ConvertConfig())
    assert np.array_equal(np.asarray(Image.open(tmp_path / "out.png"))[..., 3], ALPHA_RAMP)
    assert not left_out_lines(caplog)
    convert_file(src, tmp_path / "out.jpg", invert, ConvertConfig())
    assert left_out_lines(caplog) == ["out.jpg leaves out the alpha channel (.jpg holds none; write .png, .webp or "
                                      ".tif to keep it)"]


def test_segments_copy_chapters_and_the_cover_once(tmp_path, caplog):
    """The join of --segment-seconds copies what a single run copies, and names what it leaves out."""
    import av

    from rtstyle.config import ConvertConfig
    from rtstyle.jobs.convert import convert_file
    from rtstyle.jobs.segments import convert_segmented

    src = extras_clip(tmp_path / "in.mp4", chapters=True, cover=True)
    single = convert_file(src, tmp_path / "single.mp4", invert, ConvertConfig())
    joined = convert_segmented(src, tmp_path / "joined.mp4", invert, ConvertConfig(), seconds=0.5)
    assert joined.frames == single.frames == 24
    for path in (single.output, joined.output):
        assert chapter_titles(path) == ["Opening", "Ending"]
        with av.open(str(path)) as made:
            assert [s.type for s in made.streams if s.type != "data"] == ["video", "audio", "video"]
    assert not left_out_lines(caplog)
    convert_segmented(src, tmp_path / "joined.mkv", invert, ConvertConfig(), seconds=0.5)
    assert left_out_lines(caplog) == ["joined.mkv leaves out the cover picture (written to .mp4 only)"]


def test_attachments_are_copied_into_matroska(tmp_path, caplog):
    """The fonts of ASS subtitles travel as Matroska attachments."""
    import av

    from rtstyle.config import ConvertConfig
    from rtstyle.jobs.convert import convert_file

    src = tmp_path / "in.mkv"
    with av.open(str(src), "w") as out:
        video = out.add_stream("libx264", rate=12)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        out.add_attachment("title.ttf", "font/ttf", b"a font's bytes")
        for index in range(6):
            frame = av.VideoFrame.from_ndarray(scene_frame(index, 64, 48, 12), format="rgb24")
            frame.pts, frame.time_base = index, Fraction(1, 12)
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
    convert_file(src, tmp_path / "out.mkv", invert, ConvertConfig())
    with av.open(str(tmp_path / "out.mkv")) as made:
        assert [(s.name, s.mimetype, bytes(s.data)) for s in made.streams if s.type == "attachment"] == [
            ("title.ttf", "font/ttf", b"a font's bytes")]
    assert not left_out_lines(caplog)
    convert_file(src, tmp_path / "out.mp4", invert, ConvertConfig())
    assert left_out_lines(caplog) == ["out.mp4 leaves out 1 attachment (fonts or files: .mp4 holds none; .mkv does)"]


def test_a_timecode_track_is_kept_and_other_data_streams_named(tmp_path, caplog):
    import av

    from rtstyle.config import ConvertConfig
    from rtstyle.jobs.convert import convert_file

    src = tmp_path / "camera.mov"
    with av.open(str(src), "w") as out:
        video = out.add_stream("libx264", rate=12)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        video.metadata["timecode"] = "01:00:00:00"  # the muxer adds a tmcd track
        for index in range(6):
            frame = av.VideoFrame.from_ndarray(scene_frame(index, 64, 48, 12), format="rgb24")
            frame.pts, frame.time_base = index, Fraction(1, 12)
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
    convert_file(src, tmp_path / "out.mov", invert, ConvertConfig())
    with av.open(str(tmp_path / "out.mov")) as made:
        assert made.streams.video[0].metadata.get("timecode") == "01:00:00:00"
        assert [s.type for s in made.streams] == ["video", "data"]
    assert not left_out_lines(caplog)


def test_a_picture_too_large_for_the_engine_goes_in_tiles(monkeypatch, caplog):
    """On the torch path (a GPU), a picture that runs the engine out of memory is stylized in tiles on the lean
    path instead, with the same style: what is accepted is stylized, in bounded memory."""
    import torch

    from rtstyle.api import load_stylizer
    from rtstyle.config import EngineConfig
    from rtstyle.model.styles import StyleChoice
    from rtstyle.stylizers.torch import TorchStylizer

    picture = np.ascontiguousarray(np.tile(scene_frame(0, 1100, 1100), (2, 2, 1)))  # 4.8 MP: above the tile size
    torch_path = load_stylizer("fast", StyleChoice(), EngineConfig(device="cpu"), lean=False)
    lean = load_stylizer("fast", StyleChoice(), EngineConfig(device="cpu"))
    assert isinstance(torch_path, TorchStylizer)

    def out_of_memory(self, images):
        raise torch.OutOfMemoryError("CUDA out of memory (simulated)")

    monkeypatch.setattr(TorchStylizer, "__call__", out_of_memory)
    tiled = torch_path.stylize_image(picture)
    assert np.array_equal(tiled, lean.stylize_image(picture))
    assert any("stylized in tiles on the CPU" in r.getMessage() for r in caplog.records)
