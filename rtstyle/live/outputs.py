"""Where a live stream goes besides the preview: a recording and a virtual camera, opened together so
that a failure in the second leaves nothing of the first behind."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..io.sinks import Sink
    from ..io.sources import Source


def open_live_source(camera: str, size: tuple[int, int], fps: float, synthetic: bool = False) -> Source:
    """A camera by index, name or path (always the newest frame), or a generated moving scene."""
    from ..io.sources import SyntheticSource, WebcamSource

    if synthetic:
        return SyntheticSource(*size, fps=fps)
    from ..io.cameras import resolve_camera

    return WebcamSource(resolve_camera(camera), size, fps)


def open_live_outputs(source: Source, record: Path | None = None, virtual_cam: str | None = None,
                      mirror_virtual_cam: bool = False) -> tuple[Sink | None, str | None]:
    """(the sink for a recording and/or a virtual camera, or None; the virtual camera's device name).

    `virtual_cam` "" takes the first free device. On a failure the source is closed and the recording's
    partial file removed.
    """
    from ..io.sinks import RecordSink, TeeSink, VirtualCameraSink

    recording = RecordSink(record, source.size, source.fps) if record is not None else None
    if virtual_cam is None:
        return recording, None
    try:
        camera = VirtualCameraSink(source.size, source.fps, virtual_cam, mirror_virtual_cam)
    except BaseException:
        source.close()
        if recording is not None:
            recording.abort()
        raise
    return (TeeSink(recording, camera) if recording is not None else camera), camera.device
