"""Live controls: the state the preview keys change, and the stylizer that follows it.

The preview sink writes to `LiveControls`; the stylize stage asks `StyleSwitcher` for the
stylizer that matches the current state between batches. Most switches (a built-in style of the
quality model, a strength step, a picture) only change the norm parameters the engine is fed,
and happen in place before the next batch (`restyle`, milliseconds). A style that changes conv
weights (a LoRA adapter) needs a new engine: it is built in a background thread while frames keep
flowing through the current stylizer (a TensorRT or torch.compile build takes tens of seconds),
and built ones are kept, so flipping back and forth costs nothing after the first time.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..model.styles import MAX_STRENGTH
from ..stylizers.base import AfterStep, PendingBatch, Stylizer

log = logging.getLogger(__name__)

VIEWS = ("stylized", "side-by-side", "original")


@dataclass
class LiveControls:
    styles: list[str]
    style_index: int = 0
    strength: float = 1.0
    view: str = "stylized"
    active: tuple[str, float] | None = None  # what the frames show; differs from state() while building
    notice: tuple[str, float] | None = None  # (a message for the viewer, time.monotonic() when it was said)
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

    def choose(self, style: str, strength: float) -> None:
        """Show `style` at `strength`; a style no longer in the list (see `drop_style`) keeps the current one."""
        with self._lock:
            if style in self.styles:
                self.style_index = self.styles.index(style)
            self.strength = strength

    def drop_style(self, style: str) -> None:
        """Take `style` out of the list (its stylizer cannot be built); if it was chosen, go back to `active`."""
        with self._lock:
            if style not in self.styles or len(self.styles) == 1:
                return
            chosen = self.style
            self.styles.remove(style)
            if chosen == style and self.active is not None:
                chosen, self.strength = self.active
            self.style_index = self.styles.index(chosen) if chosen in self.styles else 0

    def say(self, text: str) -> None:
        self.notice = (text, time.monotonic())

    def recent_notice(self, seconds: float = 8.0) -> str | None:
        """The notice, if it was said in the last `seconds`."""
        notice = self.notice
        return notice[0] if notice is not None and time.monotonic() - notice[1] < seconds else None

    def neighbour(self, step: int) -> tuple[str, float]:
        """The state `next_style(step)` would give."""
        with self._lock:
            return self.styles[(self.style_index + step) % len(self.styles)], self.strength


class BackgroundBuild:
    """One stylizer being built on a daemon thread (a build cannot be interrupted; exit need not wait).

    `shape` (batch, height, width): the stylizer is warmed up for it before it is handed over, so
    a compiled engine does not compile on the stream's next frame.
    """

    def __init__(self, key: tuple[str, float], build: Callable[[str, float], Stylizer],
                 shape: tuple[int, int, int] | None = None):
        self.key = key
        self.result: Stylizer | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(build, shape), name="rtstyle-build", daemon=True)
        self._thread.start()

    def _run(self, build: Callable[[str, float], Stylizer], shape: tuple[int, int, int] | None) -> None:
        try:
            stylizer = build(*self.key)
            if shape is not None and hasattr(stylizer, "warm_up"):
                stylizer.warm_up(*shape)
            self.result = stylizer
        except BaseException as exc:  # handed to the stylize stage, which decides what it means
            self.error = exc

    def done(self) -> bool:
        return not self._thread.is_alive()


#: Switches `stylizer` to (style, strength) in place and says so, or says it cannot (`stylizers.factory.restyle`).
Restyle = Callable[[Stylizer, str, float], bool]


class StyleSwitcher:
    """Submits like a Stylizer; follows `controls`, restyling in place or building new stylizers.

    A switch first tries `restyle` on the current stylizer (same engine, new norm inputs). Else,
    at most one build runs at a time, for the state asked for when it started; when it lands and
    the state has moved on (a held strength key), the next build starts from the newest state.
    A style whose build fails (a broken adapter file, say) is taken out of the list and said so on
    the controls, and the stream stays on the style it shows: one bad file must not end a call.
    """

    KEEP = 8  # built stylizers kept, so memory stays bounded when someone holds a key down

    def __init__(self, controls: LiveControls, build: Callable[[str, float], Stylizer],
                 restyle: Restyle | None = None):
        self.controls = controls
        self.build = build
        self.restyle = restyle
        self.builds = 0  # engines built, the first included: a switch that restyles adds none
        self._needs_engines: set[tuple[str, float]] = set()  # states `restyle` cannot reach
        self._built: dict[tuple[str, float], Stylizer] = {}
        self._pending: BackgroundBuild | None = None
        self._shape: tuple[int, int, int] | None = None  # (batch, height, width) the stream runs at
        first = controls.state()
        self._keep(first, build(*first))  # the first frame needs one: built here, in the foreground
        self.builds = 1
        self.current = self._built[first]
        controls.active = first

    @property
    def description(self) -> str:
        return self.current.description

    def _keep(self, key: tuple[str, float], stylizer: Stylizer) -> None:
        self._built[key] = stylizer
        if len(self._built) > self.KEEP:
            self._built.pop(next(iter(self._built)))

    def _collect(self) -> None:
        pending = self._pending
        if pending is None or not pending.done():
            return
        self._pending = None
        if pending.error is not None:
            if not isinstance(pending.error, Exception):  # KeyboardInterrupt, SystemExit: not the style's fault
                raise pending.error
            self._give_up_on(pending.key[0], pending.error)
            return
        self.builds += 1
        self._keep(pending.key, pending.result)

    def _give_up_on(self, style: str, error: Exception) -> None:
        showing = self.controls.active[0] if self.controls.active else "the current style"
        log.warning("could not build a stylizer for %s, so it is left out; staying on %s: %s", style, showing, error)
        self.controls.drop_style(style)
        self.controls.say(f"{Path(style).name} left out: {error}")

    def _switch(self, key: tuple[str, float]) -> None:
        chosen = self._built[key]
        if chosen is not self.current:
            self.current = chosen
            self.controls.active = key

    def warm_up(self, batch: int, height: int, width: int) -> None:
        self._shape = (batch, height, width)
        self.current.warm_up(batch, height, width)

    def make_smoother(self, kind: str, strength: float):
        return self.current.make_smoother(kind, strength)

    def submit(self, images: list[np.ndarray], after: AfterStep | None = None, layout: str = "rgb24"
               ) -> PendingBatch:
        self._collect()
        wanted = self.controls.state()
        if wanted != self.controls.active:
            self._follow(wanted)
        if self._pending is None and self._needs_engines and self.controls.state() == self.controls.active:
            self._prefetch()
        return self.current.submit(images, after, layout)

    def _follow(self, wanted: tuple[str, float]) -> None:
        """Restyle in place, switch to a built stylizer, or start building one for `wanted`."""
        try:
            restyled = self._restyled(wanted)
        except Exception as exc:  # the style itself cannot be read (a broken adapter file)
            self._give_up_on(wanted[0], exc)
            return
        if restyled:
            # The same stylizer now paints `wanted`: it is kept under that key alone.
            self._built = {key: s for key, s in self._built.items() if s is not self.current}
            self._keep(wanted, self.current)
            self.controls.active = wanted
        elif wanted in self._built:
            self._switch(wanted)
        elif self._pending is None:
            log.info("building stylizer for %s at strength %.2f in the background", *wanted)
            self._pending = BackgroundBuild(wanted, self.build, self._shape)

    def _restyled(self, wanted: tuple[str, float]) -> bool:
        if self.restyle is None or wanted in self._needs_engines:
            return False
        if self.restyle(self.current, *wanted):
            return True
        self._needs_engines.add(wanted)
        return False

    def _prefetch(self) -> None:
        """Styles that need engines of their own (LoRA adapters): build the next and previous one ahead,
        one at a time in the background, so n / p lands on a built engine."""
        for step in (1, -1):
            key = self.controls.neighbour(step)
            if key not in self._built:
                self._pending = BackgroundBuild(key, self.build, self._shape)
                return

    def __call__(self, images: list[np.ndarray]) -> list[np.ndarray]:
        return self.submit(images).result()
