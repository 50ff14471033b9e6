"""Colour: YUV read and written with the input's own matrix and range, and the output tagged to match.

The stylizer is an identity here, so every level that moves is the pipeline's doing.
"""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest
import torch
from av.video.reformatter import ColorRange, Colorspace

from rtstyle.config import ConvertConfig
from rtstyle.io.color import BT709, BT2020_NCL, HLG, PQ, SMPTE170M, ColorInfo, yuv_layout
from rtstyle.jobs.convert import convert_file
from rtstyle.stylizers.base import PendingBatch
from rtstyle.stylizers.torch import TorchStylizer

# SMPTE-style bars plus the red, which BT.601 decoding of BT.709 samples turns (183, 56, 19).
BARS = [(191, 191, 191), (191, 191, 0), (0, 191, 191), (0, 191, 0), (191, 0, 191), (191, 0, 0), (0, 0, 191),
        (171, 44, 23)]


class Identity:
    def submit(self, images, after=None, layout="rgb24"):
        return PendingBatch(list(images), len(images))


def bars(width: int, height: int) -> np.ndarray:
    image = np.zeros((height, width, 3), np.uint8)
    step = width // len(BARS)
    for index, colour in enumerate(BARS):
        image[:, index * step:(index + 1) * step] = colour
    return image


def write_bars(path, width: int, height: int, tags: tuple[int, int, int, int] | None, swscale: dict | None):
    """A clip of bars; `tags` (matrix, primaries, transfer, range) written and `swscale` used to make YUV."""
    image = bars(width, height)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": "8", "preset": "ultrafast"}
        if tags is not None:
            context = stream.codec_context
            context.colorspace, context.color_primaries, context.color_trc, context.color_range = tags
        for index in range(3):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuv420p", **(swscale or {}))
            frame.pts, frame.time_base = index, Fraction(1, 24)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def read_back(path, swscale: dict | None = None):
    """(tags, RGB of the first frame) decoded with the matrix the tags name, as a careful player would,
    or with `swscale` (the matrix and range the clip was made with)."""
    with av.open(str(path)) as container:
        frame = next(container.decode(video=0))
        tags = (frame.colorspace, frame.color_primaries, frame.color_trc, frame.color_range)
        space = {BT709: Colorspace.ITU709, BT2020_NCL: Colorspace.BT2020}.get(frame.colorspace, Colorspace.ITU601)
        full = ColorRange.JPEG if frame.color_range == 2 else ColorRange.MPEG
        if swscale is not None:
            space, full = swscale["dst_colorspace"], swscale["dst_color_range"]
        rgb = frame.to_ndarray(format="rgb24", src_colorspace=space, src_color_range=full)
    return tags, rgb


def bar_centres(rgb: np.ndarray) -> np.ndarray:
    step = rgb.shape[1] // len(BARS)
    return np.array([rgb[rgb.shape[0] // 2, index * step + step // 2] for index in range(len(BARS))]).astype(int)


@pytest.mark.parametrize("width, height, tags, swscale, expected_tags", [
    # Tagged BT.709 HD: kept, tags and all.
    (1280, 720, (BT709, BT709, BT709, 1), {"dst_colorspace": Colorspace.ITU709, "dst_color_range": ColorRange.MPEG},
     (BT709, BT709, BT709, 1)),
    # Untagged HD: read as BT.709 (as players do), written as BT.709 and tagged so.
    (1280, 720, None, {"dst_colorspace": Colorspace.ITU709, "dst_color_range": ColorRange.MPEG},
     (BT709, BT709, BT709, 1)),
    # Untagged SD: BT.601.
    (640, 360, None, {"dst_colorspace": Colorspace.ITU601, "dst_color_range": ColorRange.MPEG},
     (SMPTE170M, SMPTE170M, SMPTE170M, 1)),
    # Full-range BT.601, tagged.
    (640, 360, (SMPTE170M, SMPTE170M, SMPTE170M, 2),
     {"dst_colorspace": Colorspace.ITU601, "dst_color_range": ColorRange.JPEG}, (SMPTE170M, SMPTE170M, SMPTE170M, 2)),
])
def test_colours_and_tags_survive(tmp_path, width, height, tags, swscale, expected_tags):
    src = write_bars(tmp_path / "bars.mp4", width, height, tags, swscale)
    out = tmp_path / "out.mp4"
    convert_file(src, out, Identity(), ConvertConfig(crf=8))
    out_tags, rgb = read_back(out)
    _, source = read_back(src, swscale)
    assert out_tags == expected_tags
    assert np.abs(bar_centres(rgb) - bar_centres(source)).max() <= 2, (bar_centres(rgb), bar_centres(source))
    assert np.abs(bar_centres(source) - np.array(BARS)).max() <= 3  # the clip is what it should be


def test_hdr_keeps_its_tags_and_says_so(tmp_path, caplog):
    tags = (BT2020_NCL, 9, PQ, 1)
    src = write_bars(tmp_path / "pq.mp4", 640, 360, tags, {"dst_colorspace": Colorspace.BT2020,
                                                           "dst_color_range": ColorRange.MPEG})
    with caplog.at_level("WARNING"):
        convert_file(src, tmp_path / "out.mp4", Identity(), ConvertConfig(crf=8))
    out_tags, rgb = read_back(tmp_path / "out.mp4")
    _, source = read_back(src)
    assert out_tags == tags  # the pixels are the input's PQ-coded values, so the tags stay PQ
    assert np.abs(bar_centres(rgb) - bar_centres(source)).max() <= 2
    assert sum("HDR input" in r.message for r in caplog.records) == 1


@pytest.mark.parametrize("color", [ColorInfo(BT709, False, BT709, BT709), ColorInfo(SMPTE170M, True, 6, 6),
                                   ColorInfo(BT2020_NCL, False, 9, HLG)])
def test_gpu_yuv_conversion_matches_swscale_for_each_matrix(color):
    """The GPU path's RGB -> yuv420p (run here on the CPU) agrees with what the encoder's swscale makes."""
    from rtstyle.io.color import parse_yuv_layout
    from rtstyle.io.synthetic import scene_frame

    rgb = scene_frame(12, 160, 96)  # gradients, edges and saturated discs
    swscale = color.swscale()
    expected = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(
        format="yuv420p", dst_colorspace=swscale["colorspace"], dst_color_range=swscale["range"],
        interpolation=swscale["interpolation"]).to_ndarray()
    batch = torch.from_numpy(rgb).permute(2, 0, 1)[None].float().div(255)
    got = TorchStylizer.to_yuv420p(batch, *parse_yuv_layout(yuv_layout(color)))[0].numpy()
    diff = np.abs(got.astype(int) - expected.astype(int))
    assert diff[:96].max() <= 1
    assert diff[96:].mean() < 1.0  # chroma: box vs swscale's filter differ only at edges
