"""Bit depth: 10-bit video and 16-bit images keep their levels through the pipeline."""

from __future__ import annotations

from fractions import Fraction

import av
import cv2
import numpy as np
import pytest

from rtstyle.cli.main import main
from rtstyle.config import ConvertConfig, EngineConfig
from rtstyle.jobs.convert import convert_file
from rtstyle.stylizers.base import PendingBatch


class Identity:
    def submit(self, images, after=None, layout="rgb24"):
        return PendingBatch(list(images), len(images))

    def __call__(self, images):
        return list(images)


def ramp16(width: int = 512, height: int = 64) -> np.ndarray:
    """A smooth left-to-right gradient over the full 16-bit range, as RGB."""
    row = np.linspace(0, 65535, width)
    return (np.repeat(row[None, :, None], 3, axis=2) * np.ones((height, 1, 1))).astype(np.uint16)


def ten_bit_clip(path, frames: int = 6):
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt = 512, 64, "yuv420p10le"
        stream.options = {"crf": "4", "preset": "ultrafast"}
        for index in range(frames):
            frame = av.VideoFrame.from_ndarray(ramp16(), format="rgb48le")
            frame.pts, frame.time_base = index, Fraction(1, 24)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def levels_and_format(path) -> tuple[int, str]:
    """Distinct green levels along the middle row, decoded at 16 bits, and the coded pixel format."""
    with av.open(str(path)) as container:
        frame = next(container.decode(video=0))
        return len(np.unique(frame.to_ndarray(format="rgb48le")[32, :, 1])), frame.format.name


def test_ten_bit_video_stays_ten_bit(tmp_path):
    src = ten_bit_clip(tmp_path / "in10.mp4")
    source_levels, source_format = levels_and_format(src)
    assert source_format == "yuv420p10le" and source_levels > 300
    convert_file(src, tmp_path / "out10.mp4", Identity(), ConvertConfig(crf=4))
    levels, pix_fmt = levels_and_format(tmp_path / "out10.mp4")
    assert pix_fmt == "yuv420p10le"
    assert levels > 0.8 * source_levels
    # Forced to 8 bits, the banding is back: what the default avoids.
    convert_file(src, tmp_path / "out8.mp4", Identity(), ConvertConfig(crf=4, pix_fmt="yuv420p"))
    eight, pix_fmt = levels_and_format(tmp_path / "out8.mp4")
    assert pix_fmt == "yuv420p" and eight < levels / 1.5


def test_ten_bit_video_through_the_real_lean_stylizer(tmp_path):
    from rtstyle.api import load_stylizer

    src = ten_bit_clip(tmp_path / "in10.mp4", frames=3)
    stylizer = load_stylizer("fast", None, EngineConfig(device="cpu"))
    result = convert_file(src, tmp_path / "out.mp4", stylizer, ConvertConfig(smooth="flow"))
    assert result.frames == 3
    assert levels_and_format(tmp_path / "out.mp4")[1] == "yuv420p10le"


@pytest.mark.parametrize("flag, value, message", [("--pix-fmt", "yuv420p12le", "cannot write pixel format"),
                                                   ("--codec", "nonesuch", "has no encoder 'nonesuch'")])
def test_unavailable_encoder_choices_are_one_line(tmp_path, clip, capsys, flag, value, message):
    assert main(["stylize", str(clip), "-o", str(tmp_path / "o.mp4"), flag, value, "-q"]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_sixteen_bit_images_keep_their_levels(tmp_path, channels):
    ramp = ramp16(256, 32)
    pixels = {1: ramp[..., 0], 3: ramp, 4: np.dstack([ramp, np.full(ramp.shape[:2], 40000, np.uint16)])}[channels]
    src = tmp_path / "deep.png"
    assert cv2.imwrite(str(src), pixels)
    out = tmp_path / "out.png"
    convert_file(src, out, Identity(), ConvertConfig())
    back = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    assert back.dtype == np.uint16 and back.shape[2] == (4 if channels == 4 else 3)
    assert len(np.unique(back[16, :, 1])) == 256  # every level kept: 99% of them were 255 before
    assert np.abs(back[..., 1].astype(int) - ramp[..., 1]).max() == 0
    if channels == 4:
        assert (back[..., 3] == 40000).all()


def test_sixteen_bit_grey_through_the_real_stylizer_is_not_flat(tmp_path):
    from rtstyle.api import load_stylizer

    src = tmp_path / "grey16.png"
    cv2.imwrite(str(src), ramp16(256, 64)[..., 0])
    out = tmp_path / "out.png"
    convert_file(src, out, load_stylizer("fast", None, EngineConfig(device="cpu")), ConvertConfig())
    back = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    assert back.dtype == np.uint16
    assert (back > 65000).mean() < 0.5 and back.std() > 3000
    jpeg = tmp_path / "out.jpg"
    convert_file(src, jpeg, Identity(), ConvertConfig())  # JPEG holds 8 bits: written as 8
    assert cv2.imread(str(jpeg)).dtype == np.uint8
