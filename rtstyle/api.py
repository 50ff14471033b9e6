"""Python entry points: build a stylizer once, then convert files or frames with it.

    from rtstyle.api import load_stylizer, stylize_file
    stylizer = load_stylizer("quality", StyleChoice({"starry-swirl": 1.0}, strength=0.8))
    stylize_file("in.mp4", "out.mp4", stylizer)
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import os
import shutil
import threading
from pathlib import Path

from .config import SMOOTH_STRENGTH, ConvertConfig, EngineConfig
from .errors import InputError, StyleError
from .io.sinks import NullSink, PreviewSink, Sink, TeeSink, Window
from .io.sources import Source
from .model.styles import StyleChoice, builtin_styles
from .pipeline.controls import LiveControls, StyleSwitcher
from .pipeline.convert import ConvertResult, Progress, convert_file
from .pipeline.faces import FaceStage, keep_faces, parse_faces  # noqa: F401 - keep_faces: for photos in memory
from .pipeline.metrics import Metrics
from .pipeline.runner import RunResult, StreamConfig, run_stream
from .pipeline.schedule import ScheduledStylizer, StyleSchedule

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
    from .backends.onnx_cpu import OnnxCpuStylizer
    from .model.spec import is_norm_key
    from .model.templates import filled_template, has_template, styled_graph
    from .model.weights import fuse_style

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
    from .model.weights import read_base

    return read_base(model)


def fused_style(model: str | Path, style: StyleChoice):
    """`style` fused for `model` in numpy: its conv key and its norm parameters (`weights.FusedStyle`)."""
    from .model.weights import fuse_style

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
    """One engine whose style follows `schedule` along a video (see pipeline/schedule.py)."""
    first = StyleChoice(schedule.blend_at(0.0), strength, preserve_color)
    stylizer = load_stylizer(model, first, engine)
    norms = {}
    for _, name in schedule.keys:  # every style loads, fits and is fused before the first frame
        fused = fused_style(model, StyleChoice({name: 1.0}, strength))
        if not stylizer.conv_key or fused.conv_key != stylizer.conv_key:
            raise StyleError(f"{name!r} needs an engine of its own (a LoRA adapter, or an engine that bakes the "
                             "style in), so it cannot be scheduled; use built-in styles of the quality model or "
                             "pictures, on the CPU, torch, compile, onnx or tensorrt backends")
        norms[name] = fused.norms
    scheduled = ScheduledStylizer(stylizer, schedule, norms)
    names = " -> ".join(f"{Path(name).name} at {at:g} s" for at, name in schedule.keys)
    stylizer.description = f"{_base_weights(str(model)).base_id} model, {names}, {stylizer.describe()}"
    return scheduled


def _load_torch(model: str | Path, style: StyleChoice, engine: EngineConfig):
    try:
        from .backends.base import create_engine
        from .model.loader import fuse, load_base
        from .pipeline.frames import TorchStylizer
    except ImportError as exc:
        if exc.name != "torch":
            raise
        raise InputError(f"this engine ({engine.backend} on {engine.device}) needs torch: "
                         "pip install 'rtstyle[torch]', or use --backend onnx --device cpu") from None
    from .model.weights import conv_key

    base = load_base(model)
    styles = style.resolve(base.base_id)
    built = create_engine(fuse(base, styles), engine)
    stylizer = TorchStylizer(built, _description(base.base_id, style, built.describe()),
                             conv_key=conv_key(base.weights, styles))
    stylizer.preserve_color = style.preserve_color
    return stylizer


def stylize_file(src: str | Path, dst: str | Path, stylizer,
                 config: ConvertConfig | None = None, progress: Progress | None = None) -> ConvertResult:
    return convert_file(src, dst, stylizer, config or ConvertConfig(), progress)


def stylize_live(source: Source, model: str | Path = "quality", styles: list[str] | None = None,
                 strength: float = 1.0, engine: EngineConfig | None = None, smooth: str = "none",
                 smooth_strength: float = SMOOTH_STRENGTH, record: Sink | None = None, window: Window | None = None,
                 preview: bool = True, config: StreamConfig | None = None, duration: float | None = None,
                 preserve_color: bool = False, faces: float | str = 0.0) -> RunResult:
    """Stylize a live source (camera, synthetic scene) into a preview window and/or a recording.

    `styles` is the list the n / p keys cycle through (default: every built-in style of the model).
    `faces`: keep, soft, off or 0..1, how much of the original comes back in faces (pipeline/faces.py).
    """
    from .model.weights import read_base

    base_id = read_base(model).base_id
    controls = LiveControls(styles or builtin_styles(base_id), strength=strength)
    switcher = StyleSwitcher(
        controls, lambda name, s: load_stylizer(model, StyleChoice({name: 1.0}, s, preserve_color), engine),
        lambda stylizer, name, s: restyle(stylizer, model, StyleChoice({name: 1.0}, s, preserve_color)))
    metrics = Metrics()
    sinks: list[Sink] = [record] if record is not None else []
    # With a preview there is always a face stage, off unless asked for: its k key turns it on.
    stage = FaceStage(faces, live=True) if preview or parse_faces(faces) > 0 else None
    if preview:
        sinks.insert(0, PreviewSink(controls, metrics, window, faces=stage))
    sink = TeeSink(*sinks) if len(sinks) > 1 else (sinks[0] if sinks else NullSink())
    timer = threading.Timer(duration, controls.quit.set) if duration else None
    if timer is not None:
        timer.daemon = True
        timer.start()
    try:
        return run_stream(source, switcher, sink, config or StreamConfig(batch=1, live=True),
                          quit_event=controls.quit, metrics=metrics,
                          smoother=switcher.make_smoother(smooth, smooth_strength),
                          faces=stage)
    finally:
        if timer is not None:
            timer.cancel()
