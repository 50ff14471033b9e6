"""Built-in styles as they were before tools/steady_styles.py steadied them, for the tools that learn from them.

`steady_styles.py` replaces a busy built-in style with a steadier version of itself and keeps the
original here, in `tools/originals/<model>/`: it is the teacher of that steady version and, for the
quality model, of the fast model's style of the same name (`distill_fast.py`,
`refine_fast_styles.py`). It is not a built-in style (`rtstyle styles` does not list it) but an
ordinary adapter file: pass its path to `--style` for the crisp picture look.
"""

from __future__ import annotations

from pathlib import Path

from rtstyle.model.adapters import Adapter
from rtstyle.model.styles import load_style

ORIGINALS = Path(__file__).resolve().parent / "originals"


def original_path(name: str, model: str = "quality") -> Path:
    return ORIGINALS / model / f"{name}.safetensors"


def original_style(name: str, model: str = "quality") -> Adapter:
    """The built-in style `name` as it was before steady_styles.py replaced it, or the built-in itself."""
    path = original_path(name, model)
    return Adapter.load(path) if path.is_file() else load_style(name, model)
