"""The styles a live session steps through (n/p in the window, the page's picker), chosen and checked once
for `webcam`, `serve` and the Python API."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..model.styles import DEFAULT_STYLE, StyleChoice


@dataclass(frozen=True)
class LiveStyles:
    names: tuple[str, ...]  # in the order given (or the built-in order); `first` among them
    first: str

    def from_first(self) -> list[str]:
        """The names turned so that `first` leads: n steps on from it, p back to the last."""
        at = self.names.index(self.first)
        return [*self.names[at:], *self.names[:at]]


def live_styles(model: str | Path, styles: list[str] | tuple[str, ...] | None = None,
                style_dir: str | Path | None = None, first: str | None = None) -> LiveStyles:
    """`styles` (default: every built-in style of the model), or the pictures in `style_dir`, with `first`
    added where it is not among them.

    Every style that is not built in (an adapter file, a picture) is read and fused now, so a typo or a
    broken file is one error before the camera opens, not a style the list leaves out when n reaches it.
    """
    from ..model.styles import builtin_styles
    from ..model.weights import read_base
    from ..stylizers.factory import fused_style

    base_id = read_base(model).base_id
    if style_dir:
        from ..model.arbitrary import pictures_in

        names = pictures_in(style_dir)
    else:
        names = list(styles or ()) or builtin_styles(base_id)
    chosen = first or (DEFAULT_STYLE if DEFAULT_STYLE in names or not names else names[0])
    if chosen not in names:
        names.insert(0, chosen)
    builtin = set(builtin_styles(base_id))
    for name in names:
        if name not in builtin:
            fused_style(model, StyleChoice({name: 1.0}))
    return LiveStyles(tuple(names), chosen)
