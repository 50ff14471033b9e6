"""Live controls: the state the preview keys change, and the stylizer that follows it.

The preview sink writes to `LiveControls`; the stylize stage asks `StyleSwitcher` for the
stylizer that matches the current state between batches, building (and keeping) one per
(style, strength) it meets, so flipping back and forth costs nothing after the first time.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..model.styles import MAX_STRENGTH
from .frames import FrameStylizer

log = logging.getLogger(__name__)

VIEWS = ("stylized", "side-by-side", "original")


@dataclass
class LiveControls:
    styles: list[str]
    style_index: int = 0
    strength: float = 1.0
    view: str = "stylized"
    quit: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def style(self) -> str:
        return self.styles[self.style_index]

    def next_style(self, step: int = 1) -> None:
        with self._lock:
            self.style_index = (self.style_index + step) % len(self.styles)

    def change_strength(self, delta: float) -> None:
        with self._lock:
            self.strength = round(min(MAX_STRENGTH, max(0.0, self.strength + delta)), 2)

    def cycle_view(self) -> None:
        with self._lock:
            self.view = VIEWS[(VIEWS.index(self.view) + 1) % len(VIEWS)]

    def state(self) -> tuple[str, float]:
        with self._lock:
            return self.style, self.strength


class StyleSwitcher:
    """Callable like a FrameStylizer; follows `controls`, rebuilding engines as needed."""

    def __init__(self, controls: LiveControls, build: Callable[[str, float], FrameStylizer]):
        self.controls = controls
        self.build = build
        self._built: dict[tuple[str, float], FrameStylizer] = {}
        self.current = self._get(controls.state())

    def _get(self, key: tuple[str, float]) -> FrameStylizer:
        if key not in self._built:
            log.info("building stylizer for %s at strength %.2f", *key)
            self._built[key] = self.build(*key)
            if len(self._built) > 8:  # keep memory bounded when someone holds a key down
                self._built.pop(next(iter(self._built)))
        return self._built[key]

    @property
    def description(self) -> str:
        return self.current.description

    def __call__(self, images: list[np.ndarray]) -> list[np.ndarray]:
        chosen = self._get(self.controls.state())
        if chosen is not self.current:
            if chosen.smoother is not None:
                chosen.smoother.reset()
            self.current = chosen
        return chosen(images)
