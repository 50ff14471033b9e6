"""Built-in styles and the user's style choice (names, adapter files, blends, strength).

A built-in style is an ordinary adapter file shipped in ``assets/styles/<model>/``; nothing
here treats it specially beyond finding it by name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from ..errors import InputError, StyleError
from .adapters import Adapter

MAX_STRENGTH = 2.0
DEFAULT_STYLE = "starry-swirl"


def styles_dir(model: str) -> Path:
    return Path(str(resources.files("rtstyle.model") / "assets" / "styles" / model))


def builtin_styles(model: str) -> list[str]:
    folder = styles_dir(model)
    if not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.glob("*.safetensors"))


@dataclass(frozen=True)
class StyleChoice:
    """What to paint with: one or more styles (names or adapter paths) with weights, and a strength.

    Blend weights are normalised to sum to 1, so ``a:3,b:1`` means 75 % a. Strength scales the
    whole mix: 0 is the bare base network, 1 the styles as trained, up to 2 exaggerates them.
    A name may be a picture (a .jpg, .png, ...), whose style the arbitrary base paints with.
    `preserve_color` keeps the content's colours and takes only the style's luminance.
    """

    blend: dict[str, float] = field(default_factory=lambda: {DEFAULT_STYLE: 1.0})
    strength: float = 1.0
    preserve_color: bool = False

    def __post_init__(self) -> None:
        if not self.blend:
            raise StyleError("no style given")
        if any(w < 0 for w in self.blend.values()) or sum(self.blend.values()) <= 0:
            raise StyleError("blend weights must be non-negative and not all zero")
        if not 0.0 <= self.strength <= MAX_STRENGTH:
            raise StyleError(f"strength must be between 0 and {MAX_STRENGTH:g}, got {self.strength:g}")

    @classmethod
    def parse(cls, style: str | None, blend: str | None, strength: float, preserve_color: bool = False
              ) -> StyleChoice:
        """From the CLI: ``--style NAME|FILE`` or ``--blend a:0.6,b:0.4`` (not both)."""
        if style and blend:
            raise StyleError("give either --style or --blend, not both")
        if blend:
            return cls(parse_blend(blend), strength, preserve_color)
        return cls({style or DEFAULT_STYLE: 1.0}, strength, preserve_color)

    def weights(self) -> dict[str, float]:
        total = sum(self.blend.values())
        return {name: self.strength * w / total for name, w in self.blend.items() if w > 0}

    def resolve(self, model: str) -> list[tuple[Adapter, float]]:
        return [(load_style(name, model), weight) for name, weight in self.weights().items()]


def parse_blend(text: str) -> dict[str, float]:
    blend: dict[str, float] = {}
    for part in text.split(","):
        name, sep, weight = part.strip().rpartition(":")
        if not sep or not name:
            raise StyleError(f"bad blend {text!r}; write it like mosaic:0.6,ink:0.4")
        try:
            blend[name] = blend.get(name, 0.0) + float(weight)
        except ValueError:
            raise StyleError(f"bad weight {weight!r} in blend {text!r}") from None
    return blend


def load_style(name_or_path: str, model: str) -> Adapter:
    """A built-in style by name for `model`, an adapter file by path, or a picture (the arbitrary base)."""
    from .arbitrary import is_picture, picture_adapter

    if is_picture(name_or_path):
        return picture_adapter(name_or_path)
    if name_or_path.endswith(".safetensors") or Path(name_or_path).suffix:
        path = Path(name_or_path)
        if not path.is_file():
            raise InputError(f"adapter file not found: {path}")
        return Adapter.load(path)
    path = styles_dir(model) / f"{name_or_path}.safetensors"
    if not path.is_file():
        known = builtin_styles(model)
        hint = f"built-in styles for the {model} model: {', '.join(known)}" if known else (
            f"the {model} model has no built-in styles; give it a picture (--style-image PATH)")
        raise StyleError(f"unknown style {name_or_path!r}; {hint}")
    return Adapter.load(path)
