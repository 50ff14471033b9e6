"""A live session: a source through a style switcher (the keys' styles) into a preview window and/or a
recording, until the person quits. `webcam` and the Python API run it; `serve` runs the same switcher per viewer."""

from __future__ import annotations

import threading
from pathlib import Path

from ..config import SMOOTH_STRENGTH, EngineConfig, parse_faces
from ..io.sinks import NullSink, PreviewSink, Sink, TeeSink, Window
from ..io.sources import Source
from ..model.styles import StyleChoice, builtin_styles
from ..pipeline.faces import FaceStage
from ..pipeline.metrics import Metrics
from ..pipeline.runner import RunResult, StreamConfig, run_stream
from ..stylizers.factory import load_stylizer, restyle
from .controls import LiveControls, StyleSwitcher


def stylize_live(source: Source, model: str | Path = "quality", styles: list[str] | None = None,
                 strength: float = 1.0, engine: EngineConfig | None = None, smooth: str = "none",
                 smooth_strength: float = SMOOTH_STRENGTH, record: Sink | None = None, window: Window | None = None,
                 preview: bool = True, config: StreamConfig | None = None, duration: float | None = None,
                 preserve_color: bool = False, faces: float | str = 0.0) -> RunResult:
    """Stylize a live source (camera, synthetic scene) into a preview window and/or a recording.

    `styles` is the list the n / p keys cycle through (default: every built-in style of the model).
    `faces`: keep, soft, off or 0..1, how much of the original comes back in faces (pipeline/faces.py).
    """
    from ..model.weights import read_base

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
