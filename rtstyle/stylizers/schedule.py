"""Styles that move along a video's timeline: `--style-schedule "0:mosaic,8:starry-swirl,12:b.jpg"`.

Between two keys the style is their blend, weighted by how far the frame lies between them, so
the look changes smoothly. That is cheap because the style is an input of the engine: each key's
norm parameters are fused once, before the first frame, and each batch gets their weighted sum
(`set_norms`), with no engine rebuilt and no file read. So every style in a schedule must differ
from the others in its norms only (the built-in styles of the quality model, or pictures with the
arbitrary model), which `factory.load_scheduled_stylizer` checks.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from ..errors import StyleError
from .base import Stylizer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StyleSchedule:
    """(seconds, style) keys in time order; a style is a built-in name, an adapter file or a picture."""

    keys: tuple[tuple[float, str], ...]

    @classmethod
    def parse(cls, text: str) -> StyleSchedule:
        keys = []
        for part in text.split(","):
            seconds, sep, name = part.strip().partition(":")
            try:
                at = float(seconds)
            except ValueError:
                at = -1.0
            if not sep or not name or not at >= 0:
                raise StyleError(f"bad style schedule {text!r}; write it as seconds:style pairs, "
                                 "e.g. 0:mosaic,8:starry-swirl")
            keys.append((at, name.strip()))
        if any(b[0] <= a[0] for a, b in zip(keys, keys[1:])):
            raise StyleError(f"the times of a style schedule must increase: {text!r}")
        return cls(tuple(keys))

    def blend_at(self, seconds: float) -> dict[str, float]:
        """The style at `seconds`: one key's style before the first key and after the last, else a blend."""
        if seconds <= self.keys[0][0]:
            return {self.keys[0][1]: 1.0}
        for (start, a), (end, b) in zip(self.keys, self.keys[1:]):
            if seconds < end:
                share = (seconds - start) / (end - start)
                return {a: 1.0 - share, b: share} if a != b else {a: 1.0}
        return {self.keys[-1][1]: 1.0}


class ScheduledStylizer:
    """A stylizer whose style follows a schedule: set from each batch's first frame time, in place.

    `norms` holds each key's fused norm parameters. A blend's are their weighted sum, exactly as
    fusing the blend would give, since norm adapters add linearly and a blend's weights sum to 1.
    """

    def __init__(self, stylizer: Stylizer, schedule: StyleSchedule, norms: dict[str, dict[str, np.ndarray]]):
        self.stylizer = stylizer
        self.schedule = schedule
        self.norms = norms
        self._blend: dict[str, float] | None = None
        self.before_batch(0.0)

    def before_batch(self, seconds: float) -> None:
        blend = {name: round(w, 3) for name, w in self.schedule.blend_at(seconds).items()}
        if blend == self._blend:
            return
        total = sum(blend.values())
        keys = self.norms[next(iter(blend))]
        self.stylizer.set_norms({key: sum(w / total * self.norms[name][key] for name, w in blend.items())
                                 for key in keys})
        self._blend = blend
        log.debug("style at %.2f s: %s", seconds, blend)

    @property
    def preserve_color(self) -> bool:
        return self.stylizer.preserve_color

    @preserve_color.setter
    def preserve_color(self, keep: bool) -> None:  # set on the stylizer that paints, not on this wrapper
        self.stylizer.preserve_color = keep

    def __call__(self, images: list[np.ndarray]) -> list[np.ndarray]:
        return self.stylizer(images)  # a special method: __getattr__ is not asked for it

    def __getattr__(self, name: str):
        return getattr(self.stylizer, name)  # submit, warm_up, make_smoother, description, ...
