"""Which colours a video's YUV samples mean, so RGB comes out and goes back as the input meant.

A decoder hands out YUV; turning it into RGB needs the matrix (BT.601, BT.709, BT.2020) and the
range (limited 16-235 or full) the file was made with, and the output must be tagged with what
its samples really are. Untagged input is read as FFmpeg and players read it: BT.709 from 720
lines up, BT.601 below, limited range. The output keeps the input's description, tags included,
HDR too: PQ or HLG input is stylized on its coded values and written under the same tags (no tone
mapping; the conversion says so in one line), so the tags always describe the pixels.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

log = logging.getLogger(__name__)

# FFmpeg's enum values (AVColorSpace, AVColorPrimaries, AVColorTransferCharacteristic, AVColorRange).
BT709, UNSPECIFIED, BT470BG, SMPTE170M, BT2020_NCL = 1, 2, 5, 6, 9
LIMITED, FULL = 1, 2
PQ, HLG = 16, 18
#: Luma weights (Kr, Kb) of each matrix.
LUMA_WEIGHTS = {BT709: (0.2126, 0.0722), BT470BG: (0.299, 0.114), SMPTE170M: (0.299, 0.114),
                BT2020_NCL: (0.2627, 0.0593)}
_DEFAULT_TAGS = {BT709: (BT709, BT709), SMPTE170M: (SMPTE170M, SMPTE170M), BT470BG: (BT470BG, SMPTE170M),
                 BT2020_NCL: (9, 14)}  # matrix -> (primaries, transfer) when only the matrix is known


@dataclass(frozen=True)
class ColorInfo:
    matrix: int = SMPTE170M  # AVColorSpace of the YUV samples
    full_range: bool = False
    primaries: int = SMPTE170M
    transfer: int = SMPTE170M

    @property
    def hdr(self) -> bool:
        return self.transfer in (PQ, HLG)

    def swscale(self) -> dict:
        """Arguments for PyAV's reformat / to_ndarray that convert with this matrix and range.

        `interpolation` asks swscale for exact rounding and full-resolution chroma: an RGB -> YUV
        -> RGB round trip of colour bars then moves a level by at most 1 instead of 3 (measured),
        for about 1.5 ms more per 720p frame.
        """
        from av.video.reformatter import ColorRange, Colorspace, Interpolation

        space = {BT709: Colorspace.ITU709, BT2020_NCL: Colorspace.BT2020}.get(self.matrix, Colorspace.ITU601)
        return {"colorspace": space, "range": ColorRange.JPEG if self.full_range else ColorRange.MPEG,
                "interpolation": Interpolation.BILINEAR | Interpolation.ACCURATE_RND | Interpolation.FULL_CHR_H_INT}

    def describe(self) -> str:
        names = {BT709: "BT.709", BT470BG: "BT.601", SMPTE170M: "BT.601", BT2020_NCL: "BT.2020"}
        transfer = {PQ: ", PQ (HDR)", HLG: ", HLG (HDR)"}.get(self.transfer, "")
        return f"{names.get(self.matrix, self.matrix)} {'full' if self.full_range else 'limited'} range{transfer}"


def color_of(frame, height: int) -> ColorInfo:
    """What `frame`'s samples mean: its tags, with FFmpeg's guesses where they are missing."""
    matrix = frame.colorspace if frame.colorspace in LUMA_WEIGHTS else (BT709 if height >= 720 else SMPTE170M)
    primaries, transfer = _DEFAULT_TAGS[matrix]
    if frame.color_primaries not in (0, UNSPECIFIED):
        primaries = frame.color_primaries
    if frame.color_trc not in (0, UNSPECIFIED):
        transfer = frame.color_trc
    return ColorInfo(matrix, frame.color_range == FULL, primaries, transfer)


def default_color(height: int) -> ColorInfo:
    """What RGB frames of this height are written as when nothing says otherwise (cameras, tests)."""
    matrix = BT709 if height >= 720 else SMPTE170M
    return ColorInfo(matrix, False, *_DEFAULT_TAGS[matrix])


def yuv_layout(color: ColorInfo) -> str:
    """The frame layout a writer takes straight from a GPU stylizer: yuv420p in this matrix and range."""
    return f"yuv420p:{color.matrix}:{'full' if color.full_range else 'limited'}"


def parse_yuv_layout(layout: str) -> tuple[float, float, bool] | None:
    """(Kr, Kb, full range) of a `yuv_layout` string; None for any other layout (RGB)."""
    kind, _, rest = layout.partition(":")
    if kind != "yuv420p" or not rest:
        return None
    matrix, _, range_name = rest.partition(":")
    kr, kb = LUMA_WEIGHTS.get(int(matrix), LUMA_WEIGHTS[SMPTE170M])
    return kr, kb, range_name == "full"


def eight_bit(images: list) -> list:
    """Frames as uint8 (16-bit ones keep their top byte): what optical flow and change detection need."""
    return [image if image.dtype.itemsize == 1 else (image >> 8).astype("uint8") for image in images]


#: BT.601 luma weights (R, G, B): what "brightness" means when a style's colours are traded for the photo's.
BT601_LUMA = (0.299, 0.587, 0.114)


def keep_colors(original, stylized, axis: int):
    """The stylized picture's luminance on the original's chroma (Gatys et al. 2016, "Preserving color").

    Works on numpy arrays and torch tensors alike, floats in 0..1 with RGB along `axis` (3 for
    N x H x W x 3, 1 for N x 3 x H x W). Adding one value to R, G and B moves Y by that value and
    leaves Cb and Cr alone, so this is exactly "Y from the stylized, CbCr from the original" (before
    the caller clips to 0..1).
    """
    def channel(x, index: int):
        return x[(slice(None),) * axis + (slice(index, index + 1),)]

    shift = sum(w * (channel(stylized, c) - channel(original, c)) for c, w in enumerate(BT601_LUMA))
    return original + shift
