"""The public face: build a stylizer once, then convert files or run a live source with it.

    from rtstyle.api import load_stylizer, stylize_file
    stylizer = load_stylizer("quality", StyleChoice({"starry-swirl": 1.0}, strength=0.8))
    stylize_file("in.mp4", "out.mp4", stylizer)

Each name lives in the package that owns it (stylizers.factory, jobs.convert, live.session); this module
only gathers them.
"""

from __future__ import annotations

from pathlib import Path

from .config import ConvertConfig
from .jobs.convert import ConvertResult, Progress, convert_file
from .live.session import stylize_live
from .pipeline.faces import keep_faces
from .stylizers.factory import fused_style, lean_path_reason, load_scheduled_stylizer, load_stylizer, restyle

__all__ = ["fused_style", "keep_faces", "lean_path_reason", "load_scheduled_stylizer", "load_stylizer", "restyle",
           "stylize_file", "stylize_live"]


def stylize_file(src: str | Path, dst: str | Path, stylizer,
                 config: ConvertConfig | None = None, progress: Progress | None = None) -> ConvertResult:
    return convert_file(src, dst, stylizer, config or ConvertConfig(), progress)
