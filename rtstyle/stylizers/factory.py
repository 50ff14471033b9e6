"""Building a stylizer: the lean (numpy + ONNX Runtime) or the torch path, styles fused in, and
switching a built stylizer to another style in place where only norm parameters differ."""

from __future__ import annotations

import functools
import importlib.util
import logging
import os
import shutil
from pathlib import Path

from ..config import EngineConfig
from ..errors import InputError, StyleError
from ..model.styles import StyleChoice
from .schedule import ScheduledStylizer, StyleSchedule

log = logging.getLogger(__name__)


def load_stylizer(model: str | Path = "quality", style: StyleChoice | None = None,
                  engine: EngineConfig | None = None, lean: bool = True):
    """Fuse the chosen styles into the base network and build an engine for it.

    On a CPU with ONNX Runtime (and always when torch is not installed) this is the lean path:
    numpy fusion into the base's committed ONNX template, no torch imported. Elsewhere (CUDA, the
    torch/jit/compile/tensorrt backends, custom bases without a template) it is the torch path.
    `lean=False` forces the torch path (`rtstyle export` needs its cached engine files).
    Temporal smoothing belongs to a stream, not to a stylizer: see `ConvertConfig.smooth` and
    `stylize_live(smooth=...)`.
    """
    style = style or StyleChoice()
    engine = engine or EngineConfig()
    reason = lean_path_reason(engine) if lean else None
    if reason is not None:
        stylizer = _load_lean(model, style, engine)
        if stylizer is not None:
            log.info("engine: %s (%s)", stylizer.describe(), reason)
            return stylizer
    return _load_torch(model, style, engine)


def lean_path_reason(engine: EngineConfig) -> str | None:
    """Why the lean path serves `engine`, or None when it cannot (decided without importing torch)."""
    if engine.backend not in ("auto", "onnx") or engine.device.startswith("cuda") or engine.precision == "fp16":
        return None
    if importlib.util.find_spec("onnxruntime") is None:
        return None
    has_torch = importlib.util.find_spec("torch") is not None
    if engine.device == "auto" and has_torch and _nvidia_driver():
        return None  # a CUDA GPU is likely: let the torch path look
    if not has_torch:
        return "lean path: ONNX Runtime with numpy; torch is not installed"
    if engine.device == "cpu":
        return "lean path: ONNX Runtime with numpy on the CPU, torch not imported"
    return "lean path: no NVIDIA driver here, so ONNX Runtime with numpy on the CPU, torch not imported"


def _nvidia_driver() -> bool:
    return os.path.exists("/proc/driver/nvidia/version") or shutil.which("nvidia-smi") is not None


def _load_lean(model: str | Path, style: StyleChoice, engine: EngineConfig):
    from ..model.spec import is_norm_key
    from ..model.templates import filled_template, has_template, styled_graph
    from ..model.weights import fuse_style
    from .lean import OnnxCpuStylizer

    base = _base_weights(str(model))
    if not has_template(base.base_id, base.spec):
        if importlib.util.find_spec("torch") is None:
            raise InputError(f"the base {base.base_id!r} has no ONNX template; running it needs torch to export "
                             "its graph: pip install 'rtstyle[torch]'")
        return None
    fused = fuse_style(base, style.resolve(base.base_id))
    _, checked = filled_template(base.base_id, {**fused.convs, **fused.norms})  # names and shapes
    convs = {name: array for name, array in checked.items() if not is_norm_key(name)}
    stylizer = OnnxCpuStylizer(styled_graph(base.base_id), convs, "", base.base_id, threads=engine.threads,
                               norms=fused.norms, conv_key=fused.conv_key, parallel_frames=engine.parallel_frames)
    stylizer.preserve_color = style.preserve_color
    stylizer.description = _description(base.base_id, style, stylizer.describe())
    return stylizer


def _description(base_id: str, style: StyleChoice, engine: str) -> str:
    blend = ", ".join(f"{Path(name).name} {w:.2f}" for name, w in style.weights().items())
    colors = ", the content's colours" if style.preserve_color else ""
    return f"{base_id} model, {blend}{colors}, {engine}"


@functools.lru_cache(maxsize=4)
def _base_weights(model: str):
    """A base read once per process: a live switch re-fuses the norms without reading the file again."""
    from ..model.weights import read_base

    return read_base(model)


def fused_style(model: str | Path, style: StyleChoice):
    """`style` fused for `model` in numpy: its conv key and its norm parameters (`weights.FusedStyle`)."""
    from ..model.weights import fuse_style

    base = _base_weights(str(model))
    return fuse_style(base, style.resolve(base.base_id))


def restyle(stylizer, model: str | Path, style: StyleChoice) -> bool:
    """Switch `stylizer` to `style` in place when only norm parameters differ; False when it needs a new engine.

    A built-in style, blend, strength or picture of the same base costs a fusion in numpy (about a
    millisecond) and no engine build; a LoRA adapter that changes conv weights does not fit.
    """
    current = getattr(stylizer, "conv_key", "")
    if not current:
        return False
    fused = fused_style(model, style)
    if fused.conv_key != current:
        return False
    stylizer.set_norms(fused.norms)
    stylizer.preserve_color = style.preserve_color
    stylizer.description = _description(_base_weights(str(model)).base_id, style, stylizer.describe())
    return True


def load_scheduled_stylizer(model: str | Path, schedule: StyleSchedule, strength: float = 1.0,
                            engine: EngineConfig | None = None, preserve_color: bool = False) -> ScheduledStylizer:
    """One engine whose style follows `schedule` along a video, or one per base, cross-faded, where the schedule
    mixes built-in styles and pictures (see stylizers/schedule.py)."""
    bases = _schedule_bases(model, schedule)
    if len(set(bases.values())) > 1:
        from .schedule import CrossFadeStylizer

        engines = {}
        for base in dict.fromkeys(bases.values()):
            keys = tuple((at, name) for at, name in schedule.keys if bases[name] == base)
            engines[base] = load_scheduled_stylizer(base, StyleSchedule(keys), strength, engine, preserve_color)
        return CrossFadeStylizer(schedule, engines, bases)
    first = StyleChoice(schedule.blend_at(0.0), strength, preserve_color)
    stylizer = load_stylizer(model, first, engine)
    norms = {}
    for _, name in schedule.keys:  # every style loads, fits and is fused before the first frame
        fused = fused_style(model, StyleChoice({name: 1.0}, strength))
        if not stylizer.conv_key or fused.conv_key != stylizer.conv_key:
            raise StyleError(f"{name!r} needs an engine of its own (a LoRA adapter, or the jit backend, "
                             "whose frozen graph holds its style), so it cannot be scheduled; use built-in styles "
                             "or pictures, on the CPU, torch, compile, onnx or tensorrt backends")
        norms[name] = fused.norms
    scheduled = ScheduledStylizer(stylizer, schedule, norms)
    names = " -> ".join(f"{Path(name).name} at {at:g} s" for at, name in schedule.keys)
    stylizer.description = f"{_base_weights(str(model)).base_id} model, {names}, {stylizer.describe()}"
    return scheduled


def _schedule_bases(model: str | Path, schedule: StyleSchedule) -> dict[str, str]:
    """The base each style of `schedule` runs on: pictures on the arbitrary model; built-in styles and
    adapter files on `model`, or on the quality model where `model` is the arbitrary one (which has none)."""
    from ..model.adapters import adapter_base_id
    from ..model.arbitrary import BASE_ID, is_picture
    from ..model.weights import builtin_models

    styled = "quality" if Path(str(model)).stem == BASE_ID else str(model)
    bases = {}
    for _, name in schedule.keys:
        own = adapter_base_id(name) if name.endswith(".safetensors") and Path(name).is_file() else None
        bases[name] = BASE_ID if is_picture(name) else own if own in builtin_models() else styled
    return bases


def _load_torch(model: str | Path, style: StyleChoice, engine: EngineConfig):
    try:
        from ..backends.base import create_engine
        from ..model.loader import fuse, load_base
        from .torch import TorchStylizer
    except ImportError as exc:
        if exc.name != "torch":
            raise
        raise InputError(f"this engine ({engine.backend} on {engine.device}) needs torch: "
                         "pip install 'rtstyle[torch]', or use --backend onnx --device cpu") from None
    from ..model.weights import conv_key

    base = load_base(model)
    styles = style.resolve(base.base_id)
    built = create_engine(fuse(base, styles), engine)
    stylizer = TorchStylizer(built, _description(base.base_id, style, built.describe()),
                             conv_key=conv_key(base.weights, styles))
    stylizer.preserve_color = style.preserve_color
    stylizer.stylize_image = _tiles_when_out_of_memory(stylizer, model, style)
    return stylizer


def _tiles_when_out_of_memory(stylizer, model: str | Path, style: StyleChoice):
    """A still picture whole on the engine, and where that runs out of memory (100 MP on a GPU), in tiles on
    the lean path: bounded memory, the same style and norm statistics from a thumbnail (stylizers/tiles.py)."""
    tiler = []

    def stylize_image(image):
        import torch

        try:
            return stylizer([image])[0]
        except torch.OutOfMemoryError:
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            if not tiler:
                lean = _load_lean(model, style, EngineConfig(device="cpu"))
                if lean is None:
                    raise
                tiler.append(lean)
        log.warning("%dx%d picture: out of memory on %s, stylized in tiles on the CPU instead",
                    image.shape[1], image.shape[0], stylizer.device)
        return tiler[0].stylize_image(image)

    return stylize_image
