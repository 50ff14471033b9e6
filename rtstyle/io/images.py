"""Still images: upright RGB in (EXIF orientation applied), alpha kept on the way out.

8-bit images go through Pillow. 16-bit PNG and TIFF (grayscale, RGB, with or without alpha) go
through OpenCV, since Pillow reads 16-bit RGB as 8 bits and has no 16-bit RGB mode to write; they
come out as 16 bits where the output format holds it (PNG, TIFF), and as 8 bits elsewhere.

Pictures above `MAX_PIXELS` are refused in one line, from the header, before anything is decoded
(a 12 KB PNG can hold 100 megapixels). That replaces Pillow's own guard, whose two-line
`DecompressionBombWarning` would reach the terminal at 89 MP and whose error stops at 179 MP.
What is accepted is stylized in tiles on the lean path (stylizers/tiles.py), so memory follows
the picture, not the network: 1.45 GB at the peak for 100 MP (1.84 GB before; the picture decoded,
stylized and encoded, about 14 bytes a pixel with the runtime), so about 4 GB at the limit.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from ..errors import InputError, OutputError
from .locks import shown_path

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}
SIXTEEN_BIT_SUFFIXES = {".png", ".tif", ".tiff"}
#: The largest picture taken: 16384 x 16384 (268 MP), the size of the largest panoramas cameras stitch.
MAX_PIXELS = 16384 * 16384


def is_image_path(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def check_pixels(path: Path, width: int, height: int) -> None:
    """One line for a picture above `MAX_PIXELS`."""
    if width * height > MAX_PIXELS:
        raise InputError(f"{path}: {width} x {height} is {width * height / 1e6:.0f} megapixels, above the limit of "
                         f"{MAX_PIXELS / 1e6:.0f} (16384 x 16384); scale it down first")


def open_image(path: Path):
    """`Image.open` (the header only) with `MAX_PIXELS` in place of Pillow's decompression-bomb guard."""
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = MAX_PIXELS  # Pillow warns above it and refuses above twice it; we refuse first
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            raw = Image.open(path)
        except Image.DecompressionBombError:
            raise InputError(f"{path}: above the limit of {MAX_PIXELS / 1e6:.0f} megapixels (16384 x 16384); "
                             "scale it down first") from None
    try:
        check_pixels(path, *raw.size)
    except InputError:
        raw.close()
        raise
    return raw


def probe_image(path: Path) -> tuple[int, int]:
    """Read only the header: (width, height). Cheap enough to validate inputs up front; refuses what
    is above `MAX_PIXELS`."""
    from PIL import UnidentifiedImageError

    if not path.exists():
        raise InputError(f"input not found: {path}")
    try:
        with open_image(path) as raw:
            return raw.size
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"{path} is not a readable image ({exc.__class__.__name__})") from exc


def read_image(path: Path, max_side: int | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Return (H x W x 3 RGB, H x W alpha or None): uint8, or uint16 for 16-bit PNG and TIFF."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    if not path.exists():
        raise InputError(f"input not found: {path}")
    _check_size(path)  # the size limit, before either decoder
    if path.suffix.lower() in SIXTEEN_BIT_SUFFIXES:
        deep = _read_16_bit(path, max_side)
        if deep is not None:
            return deep
    try:
        with open_image(path) as raw:
            image = ImageOps.exif_transpose(raw)
            image.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"{path} is not a readable image ({exc.__class__.__name__})") from exc
    if max_side and max(image.size) > max_side:
        image.thumbnail((max_side, max_side), Image.LANCZOS)
    has_alpha = image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info)
    alpha = np.array(image.getchannel("A") if image.mode in ("RGBA", "LA") else image.convert("RGBA").getchannel(
        "A")) if has_alpha else None
    if image.mode != "RGB":
        image = image.convert("RGB")
    # One copy at a time: Pillow holds 4 bytes a pixel, its bytes 3, the array 3 (100 MP: 1 GB, not 1.4).
    pixels = np.asarray(image)
    image.close()
    return pixels.copy(), alpha


def _check_size(path: Path) -> None:
    """`MAX_PIXELS` from the header; a header Pillow cannot read is left to the decoders (OpenCV reads
    16-bit TIFFs that Pillow does not)."""
    from PIL import UnidentifiedImageError

    try:
        open_image(path).close()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        pass


def _sixteen_bit_header(path: Path) -> bool:
    """Whether the header says 16 bits a sample (a PNG's IHDR, a TIFF's BitsPerSample), read without
    decoding: 8-bit files then skip OpenCV, its import (25 ms) and a second decode."""
    from PIL import Image, UnidentifiedImageError

    if path.suffix.lower() == ".png":
        with open(path, "rb") as handle:
            head = handle.read(26)
        return len(head) == 26 and head[12:16] == b"IHDR" and head[24] == 16
    try:
        with Image.open(path) as raw:
            bits = getattr(raw, "tag_v2", {}).get(258, 8)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        return True  # let OpenCV have its try
    return max(bits if isinstance(bits, tuple) else (bits,)) == 16


def _read_16_bit(path: Path, max_side: int | None) -> tuple[np.ndarray, np.ndarray | None] | None:
    """A 16-bit image as uint16 RGB (+ alpha), or None when the file is not 16-bit."""
    if not _sixteen_bit_header(path):
        return None
    import cv2

    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if raw is None or raw.dtype != np.uint16:
        return None
    if max_side and max(raw.shape[:2]) > max_side:
        scale = max_side / max(raw.shape[:2])
        size = (max(1, round(raw.shape[1] * scale)), max(1, round(raw.shape[0] * scale)))
        raw = cv2.resize(raw, size, interpolation=cv2.INTER_AREA)
    if raw.ndim == 2:
        return np.ascontiguousarray(np.repeat(raw[..., None], 3, axis=2)), None
    if raw.shape[2] == 2:  # gray + alpha
        return np.ascontiguousarray(np.repeat(raw[..., :1], 3, axis=2)), raw[..., 1].copy()
    rgb = cv2.cvtColor(raw[..., :3], cv2.COLOR_BGR2RGB)
    return rgb, (raw[..., 3].copy() if raw.shape[2] == 4 else None)


def write_image(path: Path, rgb: np.ndarray, alpha: np.ndarray | None = None,
                left_out: list[str] | None = None) -> None:
    """`left_out`: what of the input the caller already dropped, named in the same one warning line."""
    from PIL import Image

    if rgb.dtype == np.uint16:
        if path.suffix.lower() in SIXTEEN_BIT_SUFFIXES:
            return _write_16_bit(path, rgb, alpha)
        rgb = (rgb >> 8).astype(np.uint8)  # the format holds 8 bits
        alpha = None if alpha is None else (alpha >> 8).astype(np.uint8)
    image = Image.fromarray(rgb, "RGB")
    dropped = list(left_out or [])
    if alpha is not None and path.suffix.lower() in {".png", ".webp", ".tif", ".tiff"}:
        image.putalpha(Image.fromarray(alpha, "L"))
    elif alpha is not None and alpha.min() < 255:  # an opaque alpha is no loss
        dropped.append(f"the alpha channel ({path.suffix} holds none; write .png, .webp or .tif to keep it)")
    if dropped:
        from .video import report_left_out

        report_left_out(path, dropped)
    options = {"quality": 95} if path.suffix.lower() in {".jpg", ".jpeg", ".webp"} else {}
    try:
        image.save(path, format=_format_for(path), **options)
    except OSError as exc:
        raise OutputError(f"cannot write {shown_path(path)} ({exc.strerror or exc})") from exc


def _write_16_bit(path: Path, rgb: np.ndarray, alpha: np.ndarray | None) -> None:
    import cv2

    pixels = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    if alpha is not None:
        pixels = np.dstack([pixels, alpha.astype(np.uint16)])
    try:
        # OpenCV picks the encoder from the extension; the temporary name keeps it (.x.png).
        ok = cv2.imwrite(str(path), pixels)
    except cv2.error as exc:
        raise OutputError(f"cannot write {shown_path(path)} ({str(exc).strip().splitlines()[-1]})") from exc
    if not ok:
        raise OutputError(f"cannot write {shown_path(path)}")


def _format_for(path: Path) -> str:
    suffix = path.suffix.lower()
    return {".jpg": "JPEG", ".jpeg": "JPEG", ".tif": "TIFF", ".tiff": "TIFF"}.get(suffix, suffix[1:].upper())
