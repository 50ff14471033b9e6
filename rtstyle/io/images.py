"""Still images through Pillow: upright RGB in (EXIF orientation applied), alpha kept on the way out."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputError, OutputError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}


def is_image_path(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def probe_image(path: Path) -> tuple[int, int]:
    """Read only the header: (width, height). Cheap enough to validate inputs up front."""
    from PIL import Image, UnidentifiedImageError

    if not path.exists():
        raise InputError(f"input not found: {path}")
    try:
        with Image.open(path) as raw:
            return raw.size
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"{path} is not a readable image ({exc.__class__.__name__})") from exc


def read_image(path: Path, max_side: int | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Return (H x W x 3 uint8 RGB, H x W alpha or None)."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    if not path.exists():
        raise InputError(f"input not found: {path}")
    try:
        with Image.open(path) as raw:
            image = ImageOps.exif_transpose(raw)
            image.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"{path} is not a readable image ({exc.__class__.__name__})") from exc
    if max_side and max(image.size) > max_side:
        image.thumbnail((max_side, max_side), Image.LANCZOS)
    has_alpha = image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info)
    alpha = np.asarray(image.convert("RGBA"))[..., 3].copy() if has_alpha else None
    return np.asarray(image.convert("RGB")).copy(), alpha


def write_image(path: Path, rgb: np.ndarray, alpha: np.ndarray | None = None) -> None:
    from PIL import Image

    image = Image.fromarray(rgb, "RGB")
    if alpha is not None and path.suffix.lower() in {".png", ".webp", ".tif", ".tiff"}:
        image.putalpha(Image.fromarray(alpha, "L"))
    options = {"quality": 95} if path.suffix.lower() in {".jpg", ".jpeg", ".webp"} else {}
    try:
        image.save(path, format=_format_for(path), **options)
    except OSError as exc:
        raise OutputError(f"cannot write {path} ({exc})") from exc


def _format_for(path: Path) -> str:
    suffix = path.suffix.lower()
    return {".jpg": "JPEG", ".jpeg": "JPEG", ".tif": "TIFF", ".tiff": "TIFF"}.get(suffix, suffix[1:].upper())
