"""The lean path: ONNX Runtime with numpy, no torch, for files on a CPU."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rtstyle.config import EngineConfig
from rtstyle.model.styles import StyleChoice

ROOT = Path(__file__).resolve().parents[1]
NO_TORCH = "import sys; sys.modules['torch'] = None  # any import of torch now fails\n"


def run_without_torch(code: str, tmp_path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", NO_TORCH + code], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})


def test_stylize_a_photo_and_a_clip_without_torch(tmp_path, clip, shared_data):
    photo = shared_data / "content" / "kodim01.png"
    code = (f"from rtstyle.cli.main import main\n"
            f"assert main(['stylize', {str(photo)!r}, '-o', 'photo.png', '--style', 'mosaic', '-q']) == 0\n"
            f"assert main(['stylize', {str(clip)!r}, '-o', 'clip.mp4', '--smooth', 'flow', '-q']) == 0\n"
            "assert 'torch' not in [m for m in sys.modules if sys.modules[m] is not None]\n")
    done = run_without_torch(code, tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "photo.png").stat().st_size > 0 and (tmp_path / "clip.mp4").stat().st_size > 0


DISPLAY_LIBRARIES = ("pygame", "tkinter", "PyQt5", "PyQt6", "PySide2", "PySide6", "gi", "Xlib", "wx")


def test_files_and_serve_import_no_display_library(tmp_path, shared_data):
    """A conversion or a server runs where there is no display and no display library: the preview
    window's pygame is imported only when a window opens."""
    photo = shared_data / "content" / "kodim01.png"
    code = (f"from rtstyle.cli.main import main\n"
            f"assert main(['stylize', {str(photo)!r}, '-o', 'photo.png', '--style', 'mosaic', '--scale', '0.25', "
            f"'-q']) == 0\n"
            "import rtstyle.serve.server, rtstyle.serve.engine, rtstyle.api, rtstyle.io.sinks\n"
            "from rtstyle.cli.main import build_parser\n"
            f"shown = [m for m in sys.modules if m.split('.')[0] in {DISPLAY_LIBRARIES!r}]\n"
            "assert not shown, shown\n")
    done = run_without_torch(code, tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]


def test_webcam_and_info_without_torch(tmp_path):
    code = ("from rtstyle.cli.main import main\n"
            "assert main(['webcam', '--synthetic', '--size', '160x96', '--fps', '10', '--no-preview',"
            " '--duration', '1.5', '--record', 'live.mp4', '--smooth', 'adaptive']) == 0\n"
            "assert main(['info']) == 0\n")
    done = run_without_torch(code, tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "torch" in done.stdout and "not installed" in done.stdout
    assert (tmp_path / "live.mp4").stat().st_size > 0


def test_gpu_only_choices_without_torch_are_one_clear_line(tmp_path, clip):
    code = (f"from rtstyle.cli.main import main\n"
            f"raise SystemExit(main(['stylize', {str(clip)!r}, '-o', 'o.mp4', '--backend', 'torch']))\n")
    done = run_without_torch(code, tmp_path)
    assert done.returncode == 2
    assert "needs torch: pip install 'rtstyle[torch]'" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("model", ["quality", "fast"])
def test_lean_path_matches_the_torch_onnx_path(model, shared_data):
    from PIL import Image

    from rtstyle.api import load_stylizer

    photo = np.asarray(Image.open(shared_data / "content" / "kodim01.png").convert("RGB").resize((157, 101)))
    frames = [photo, photo[::-1].copy()]
    choice = StyleChoice({"mosaic": 0.7, "woodcut": 0.3}, strength=0.8)
    lean = load_stylizer(model, choice, EngineConfig(device="cpu"))
    full = load_stylizer(model, choice, EngineConfig(device="cpu", backend="onnx"), lean=False)
    assert type(lean).__name__ == "OnnxCpuStylizer" and type(full).__name__ == "TorchStylizer"
    for a, b in zip(lean(frames), full(frames)):
        assert a.shape == b.shape == photo.shape
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 1


def test_auto_takes_the_torch_path_for_torch_only_backends():
    from rtstyle.api import lean_path_reason

    assert lean_path_reason(EngineConfig(device="cpu")) is not None
    assert lean_path_reason(EngineConfig(device="cpu", backend="onnx")) is not None
    for config in (EngineConfig(backend="torch"), EngineConfig(backend="jit"), EngineConfig(device="cuda"),
                   EngineConfig(precision="fp16")):
        assert lean_path_reason(config) is None


def test_threads_reach_the_engine():
    from rtstyle.api import load_stylizer

    stylizer = load_stylizer("fast", None, EngineConfig(device="cpu", threads=1))
    assert stylizer.session.session.get_session_options().intra_op_num_threads == 1
    # One thread is one core, parallel frames or not (a Ray worker's engine, `--threads 1`).
    capped = load_stylizer("fast", None, EngineConfig(device="cpu", threads=1, parallel_frames=2))
    assert capped.parallel_frames == 1 and capped._workers is None


def random_frames(count: int, seed: int, height: int = 64, width: int = 96) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(count)]


def test_parallel_frames_give_the_frames_of_one_at_a_time_in_order():
    """Two frames computing at once: every batch comes back as it would alone, and the smoother
    (stateful, run when the pixels are asked for) sees them in the order they were submitted."""
    from rtstyle.api import load_stylizer

    one = load_stylizer("fast", None, EngineConfig(device="cpu", threads=1))
    two = load_stylizer("fast", None, EngineConfig(device="cpu", threads=2, parallel_frames=2))
    assert two.parallel_frames == 2 and two._parallel_session is None  # made when a stream first submits
    batches = [random_frames(2, seed) for seed in range(6)]
    smooth_one, smooth_two = one.make_smoother("ema", 0.7), two.make_smoother("ema", 0.7)
    expected = [one.submit(b, smooth_one.apply_batch).result() for b in batches]
    pending = [two.submit(b, smooth_two.apply_batch) for b in batches]  # all in flight before any result
    for want, waiting in zip(expected, pending):
        for a, b in zip(want, waiting.result()):
            assert np.abs(a.astype(int) - b.astype(int)).max() <= 1
    assert two._parallel_session.session.get_session_options().intra_op_num_threads == 1  # 2 threads, 2 frames
    assert two.session.session.get_session_options().intra_op_num_threads == 2  # a photo: every thread


def test_a_style_set_after_a_parallel_submit_does_not_reach_that_batch():
    from rtstyle.api import fused_style, load_stylizer

    mosaic, woodcut = StyleChoice({"mosaic": 1.0}), StyleChoice({"woodcut": 1.0})
    stylizer = load_stylizer("quality", mosaic, EngineConfig(device="cpu", parallel_frames=2))
    frames = random_frames(1, 7)
    alone = load_stylizer("quality", mosaic, EngineConfig(device="cpu"))(frames)[0]
    waiting = stylizer.submit(frames)
    stylizer.set_norms(fused_style("quality", woodcut).norms)
    assert np.abs(waiting.result()[0].astype(int) - alone.astype(int)).max() <= 1
    assert np.abs(stylizer(frames)[0].astype(int) - alone.astype(int)).max() > 10  # the new style from here on


def test_files_take_parallel_frames_and_live_streams_one():
    from rtstyle.cli.common import engine_config
    from rtstyle.cli.main import build_parser

    files = build_parser().parse_args(["stylize", "a.mp4"])
    assert engine_config(files).parallel_frames == min(2, os.cpu_count())
    assert engine_config(files, live=True).parallel_frames == 1
    chosen = build_parser().parse_args(["webcam", "--parallel-frames", "3"])
    assert engine_config(chosen, live=True).parallel_frames == 3
