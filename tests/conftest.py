"""Shared fixtures: clips made on the fly, the shared data folder, small networks."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest

from rtstyle.io.synthetic import write_clip

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
# Build-time code and references that left the package (tools/: the CPU graph rewrites, the unmerged LoRA
# path) are imported by the tests that check them, as their scripts import them.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))


def _cuda() -> bool:
    try:
        import torch
    except ImportError:  # the lean install (pip install "rtstyle[live]"): its tests need no torch
        return False
    return torch.cuda.is_available()


def pytest_collection_modifyitems(config, items):
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    gpu = [item for item in items if "gpu" in item.keywords]
    if gpu and not _cuda():
        for item in gpu:
            item.add_marker(skip_gpu)


class _ErrorRecords(logging.Handler):
    def __init__(self):
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(autouse=True)
def no_unexpected_error_logs(request):
    """Fail a test that logs an ERROR (from any thread or library) unless it is marked `logs_errors`: an
    error a test did not look for is a bug the test's own assertions may not see."""
    handler = _ErrorRecords()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
    if handler.records and request.node.get_closest_marker("logs_errors") is None:
        lines = "; ".join(f"{r.name}: {r.getMessage()[:200]}" for r in handler.records[:5])
        pytest.fail(f"logged {len(handler.records)} unexpected ERROR record(s): {lines}")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED.is_dir():
        pytest.skip("../shared/data is not beside the project")
    return SHARED


@pytest.fixture(scope="session")
def clip(tmp_path_factory) -> Path:
    """2 s, 160x96, 24 fps, with a stereo AAC tone."""
    return write_clip(tmp_path_factory.mktemp("clips") / "clip.mp4", seconds=2.0, width=160, height=96, fps=24)


@pytest.fixture
def tree(tmp_path, shared_data) -> Path:
    """A folder for batches: two clips (one in a subfolder), a photo, a broken video, and a non-media file."""
    from PIL import Image

    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    write_clip(src / "a.mp4", seconds=1.0, width=160, height=96, fps=24)
    write_clip(src / "sub" / "b.mp4", seconds=1.0, width=160, height=96, fps=24)
    Image.open(shared_data / "content" / "kodim01.png").resize((120, 80)).save(src / "sub" / "photo.png")
    (src / "sub" / "broken.mp4").write_bytes(b"not a video at all")
    (src / "notes.txt").write_text("not media: not picked up")
    return src


@pytest.fixture(scope="session")
def fast_stylizer():
    from rtstyle.api import load_stylizer
    from rtstyle.config import EngineConfig
    from rtstyle.model.styles import StyleChoice

    return load_stylizer("fast", StyleChoice({"woodcut": 1.0}), EngineConfig(device="cpu"))


@pytest.fixture(scope="session", autouse=True)
def engine_cache(tmp_path_factory):
    """Keep compiled engines made by tests out of the checkout's engines/ folder.

    Session-scoped and autouse, so it is in place before any session or module fixture builds an engine.
    """
    folder = tmp_path_factory.getbasetemp() / "engines"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RTSTYLE_ENGINE_DIR", str(folder))
        yield folder
