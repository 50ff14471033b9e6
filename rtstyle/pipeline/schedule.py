"""Styles that move along a video's timeline: `--style-schedule "0:mosaic,8:starry-swirl,12:b.jpg"`.

Between two keys the style is their blend, weighted by how far the frame lies between them, so
the look changes smoothly. That is cheap because the style is an input of the engine: each batch
gets its interpolated norm parameters (`api.restyle`), with no engine rebuilt. So every style in a
schedule must differ from the others in its norms only (the built-in styles of the quality model,
or pictures with the arbitrary model), which `ScheduledStylizer` checks before the first frame.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import StyleError
from .pending import Stylizer

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

    `apply(blend)` puts a blend's norm parameters into the wrapped stylizer and returns False when
    the blend would need another engine (a LoRA adapter among the styles).
    """

    def __init__(self, stylizer: Stylizer, schedule: StyleSchedule, apply: Callable[[dict[str, float]], bool]):
        self.stylizer = stylizer
        self.schedule = schedule
        self.apply = apply
        for _, name in schedule.keys:  # every style loads and fits before the first frame
            if not apply({name: 1.0}):
                raise StyleError(f"{name!r} changes the network's convolutions, so it cannot be scheduled "
                                 "with other styles; use built-in styles of one model, or pictures")
        self._blend: dict[str, float] | None = None
        self.before_batch(0.0)

    def before_batch(self, seconds: float) -> None:
        blend = {name: round(w, 3) for name, w in self.schedule.blend_at(seconds).items()}
        if blend != self._blend:
            self.apply(blend)
            self._blend = blend
            log.debug("style at %.2f s: %s", seconds, blend)

    def __getattr__(self, name: str):
        return getattr(self.stylizer, name)  # submit, warm_up, make_smoother, description, ...
