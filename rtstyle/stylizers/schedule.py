"""Styles that move along a video's timeline: `--style-schedule "0:mosaic,8:starry-swirl,12:b.jpg"`.

Between two keys the style is their blend, weighted by how far the frame lies between them, so
the look changes smoothly. That is cheap because the style is an input of the engine: each key's
norm parameters are fused once, before the first frame, and each batch gets their weighted sum
(`set_norms`), with no engine rebuilt and no file read. So every style in a schedule must differ
from the others in its norms only (the built-in styles of the quality model, or pictures with the
arbitrary model), which `factory.load_scheduled_stylizer` checks.

A schedule that mixes the two (`0:mosaic,8:starry-swirl,12:photo.jpg`) runs one such engine per
base (`CrossFadeStylizer`): each key's style is exactly its own base's, and over a transition from
one base's style to the other's both engines run and their frames are cross-faded, by the share
a blend of two styles of one base would take. A built-in style is not re-expressed on the
arbitrary base: that would only approximate it, and the frames at the keys would not be the style.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from ..errors import StyleError
from .base import AfterStep, PendingBatch, Stylizer

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
        self.set_blend(self.schedule.blend_at(seconds))

    def set_blend(self, blend: dict[str, float]) -> None:
        """Set the style to `blend` of this schedule's styles (weights normalized to sum to 1)."""
        blend = {name: round(w, 3) for name, w in blend.items()}
        if blend == self._blend:
            return
        total = sum(blend.values())
        keys = self.norms[next(iter(blend))]
        self.stylizer.set_norms({key: sum(w / total * self.norms[name][key] for name, w in blend.items())
                                 for key in keys})
        self._blend = blend
        log.debug("style: %s", blend)

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


class CrossFadeStylizer:
    """A schedule over two bases: one `ScheduledStylizer` per base, their frames cross-faded over a transition
    from one base's style to the other's (see the module's docstring).

    Smoothing (`make_smoother`) runs on the host, after the cross-fade, so it is one smoother across the
    transition whichever engines make the frames.
    """

    def __init__(self, schedule: StyleSchedule, engines: dict[str, ScheduledStylizer], base_of: dict[str, str]):
        self.schedule = schedule
        self.engines = engines
        self.base_of = base_of
        self.mix: dict[str, float] = {}
        self.description = "; ".join(engine.description for engine in engines.values()) + (
            "; cross-faded between the engines where the schedule moves from one base's style to the other's")
        self.before_batch(0.0)

    def before_batch(self, seconds: float) -> None:
        by_base: dict[str, dict[str, float]] = {}
        for name, weight in self.schedule.blend_at(seconds).items():
            by_base.setdefault(self.base_of[name], {})[name] = weight
        self.mix = {base: sum(blend.values()) for base, blend in by_base.items() if sum(blend.values()) > 1e-3}
        for base in self.mix:  # an engine out of the mix keeps its style: it computes nothing
            self.engines[base].set_blend(by_base[base])

    def submit(self, images: list[np.ndarray], after: AfterStep | None = None, layout: str = "rgb24"
               ) -> PendingBatch:
        """Each engine the mix needs, on the same frames; `layout` is a GPU request, so frames come back RGB."""
        parts = [(self.engines[base].submit(images, None, "rgb24"), weight) for base, weight in self.mix.items()]
        return _CrossFaded(parts, images, after)

    def __call__(self, images: list[np.ndarray]) -> list[np.ndarray]:
        return self.submit(images).result() if images else []

    def stylize_image(self, image: np.ndarray) -> np.ndarray:
        parts = []
        for base, weight in self.mix.items():
            engine = self.engines[base]
            one = getattr(engine, "stylize_image", None)
            parts.append((PendingBatch([one(image) if one else engine([image])[0]], 1), weight))
        return _CrossFaded(parts, [image], None).result()[0]

    def warm_up(self, batch: int, height: int, width: int) -> None:
        for engine in self.engines.values():
            warm = getattr(engine, "warm_up", None)
            if warm is not None:
                warm(batch, height, width)

    def make_smoother(self, kind: str, strength: float):
        from ..temporal.host import make_host_smoother

        return make_host_smoother(kind, strength)

    def __getattr__(self, name: str):
        return getattr(next(iter(self.engines.values())), name)  # preferred_batch, parallel_frames, ...


class _CrossFaded(PendingBatch):
    """Frames of several engines, weighted and summed when first asked for, then smoothed (`after`)."""

    def __init__(self, parts: list[tuple[PendingBatch, float]], images: list[np.ndarray], after: AfterStep | None):
        super().__init__(None, len(images))
        self._parts, self._images, self._after = parts, images, after

    def done(self) -> bool:
        return all(pending.done() for pending, _ in self._parts)

    def result(self) -> list[np.ndarray]:
        if self._frames is not None:
            return self._frames
        if len(self._parts) == 1 and self._after is None:
            self._frames = self._parts[0][0].result()
            return self._frames
        from ..io.color import eight_bit

        depth = self._images[0].dtype
        top = float(np.iinfo(depth).max)
        total = sum(weight for _, weight in self._parts)
        out = sum(np.stack(pending.result()).astype(np.float32) * np.float32(weight / total / top)
                  for pending, weight in self._parts)
        if self._after is not None:
            out = self._after(eight_bit(self._images), np.ascontiguousarray(out))
        self._frames = list((np.clip(out, 0.0, 1.0) * top + 0.5).astype(depth))
        self._parts = []
        return self._frames
