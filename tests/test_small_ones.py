"""Small failures that must be one clear line: train without torch, a bad --stats-json, an engine that refuses
an input mid-stream."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from rtstyle.cli.main import main
from rtstyle.io.synthetic import write_clip

ROOT = Path(__file__).resolve().parents[1]


def test_train_on_the_lean_install_names_the_pip_command(tmp_path):
    code = ("import sys; sys.modules['torch'] = None  # the lean install: no torch\n"
            "from rtstyle.cli.main import main\n"
            "raise SystemExit(main(['train', '--style-dir', '.', '--content-dir', '.', '--out', 'a.safetensors']))\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines == ["rtstyle: error: train needs torch: pip install 'rtstyle[train]'"]


@pytest.mark.parametrize("where, message", [("{tmp}/no/such/folder/stats.json", "output folder does not exist"),
                                            ("{tmp}", "output is a directory")])
def test_a_bad_stats_json_path_fails_before_the_conversion(capsys, tmp_path, clip, monkeypatch, where, message):
    import rtstyle.pipeline.convert

    monkeypatch.setattr(rtstyle.pipeline.convert, "convert_file", lambda *a, **k: pytest.fail("converted first"))
    out = tmp_path / "o.mp4"
    code = main(["stylize", str(clip), "-o", str(out), "--model", "fast", "--device", "cpu", "-q",
                 "--stats-json", where.format(tmp=tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("rtstyle: error: --stats-json: ") and message in err
    assert len(err.strip().splitlines()) == 1 and not out.exists()


def test_an_engine_that_refuses_an_input_mid_stream_exits_1_in_one_line(capsys, tmp_path, monkeypatch):
    """TensorRT refuses a batch outside its shape profile with a BackendError: a failure while running (exit 1),
    not a usage error (exit 2). The engine here is a torch engine that refuses its third batch as TensorRT would."""
    from rtstyle.backends import base, torch_eager
    from rtstyle.errors import BackendError

    class ProfiledEngine(torch_eager.TorchEngine):
        name = "profiled"
        calls = 0

        def __call__(self, batch):
            ProfiledEngine.calls += 1
            if ProfiledEngine.calls > 2:  # the warm-up and one batch pass; the next is "outside the profile"
                raise BackendError(f"batch {batch.shape[0]} of {batch.shape[-1]}x{batch.shape[-2]} frames is outside "
                                   "this TensorRT engine's profile (sides 64..96); use --max-side")
            return super().__call__(batch)

    base._load_builtin_backends()
    monkeypatch.setitem(base._REGISTRY, "torch", lambda net, device, dtype, config: ProfiledEngine(
        net, device, dtype, config))
    clip = write_clip(tmp_path / "in.mp4", seconds=1.0, width=96, height=64, fps=12)
    out = tmp_path / "out.mp4"
    code = main(["stylize", str(clip), "-o", str(out), "--model", "fast", "--backend", "torch", "--device", "cpu",
                 "--batch", "2", "-q"])
    err = capsys.readouterr().err
    assert code == 1, err
    assert err.strip().splitlines() == [err.strip()] and "outside this TensorRT engine's profile" in err
    assert "internal error" not in err and not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
