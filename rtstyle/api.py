"""Python entry points: build a stylizer once, then convert files or frames with it.

    from rtstyle.api import load_stylizer, stylize_file
    stylizer = load_stylizer("quality", StyleChoice({"starry-swirl": 1.0}, strength=0.8))
    stylize_file("in.mp4", "out.mp4", stylizer)
"""

from __future__ import annotations

from pathlib import Path

from .backends.base import create_engine
from .config import ConvertConfig, EngineConfig
from .model.loader import fuse, load_base
from .model.styles import StyleChoice
from .pipeline.convert import ConvertResult, Progress, convert_file
from .pipeline.frames import FrameStylizer
from .temporal.smoothers import make_smoother


def load_stylizer(model: str | Path = "quality", style: StyleChoice | None = None,
                  engine: EngineConfig | None = None, smooth: str = "none", smooth_strength: float = 0.7
                  ) -> FrameStylizer:
    """Fuse the chosen styles into the base network and compile it for the chosen backend.

    `smooth` picks a temporal smoother for video (none, ema, adaptive, flow; see temporal/).
    """
    style = style or StyleChoice()
    base = load_base(model)
    net = fuse(base, style.resolve(base.base_id))
    blend = ", ".join(f"{name} {w:.2f}" for name, w in style.weights().items())
    smoother = make_smoother(smooth, smooth_strength) if smooth != "none" else None
    built = create_engine(net, engine or EngineConfig())
    smoothing = f", {smooth} smoothing {smooth_strength:g}" if smoother else ""
    return FrameStylizer(built, f"{base.base_id} model, {blend}, {built.describe()}{smoothing}", smoother)


def stylize_file(src: str | Path, dst: str | Path, stylizer: FrameStylizer,
                 config: ConvertConfig | None = None, progress: Progress | None = None) -> ConvertResult:
    return convert_file(src, dst, stylizer, config or ConvertConfig(), progress)
