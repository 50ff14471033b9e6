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
    import rtstyle.jobs.convert

    monkeypatch.setattr(rtstyle.jobs.convert, "convert_file", lambda *a, **k: pytest.fail("converted first"))
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


def test_a_schedule_of_built_in_styles_and_a_picture_cross_fades_between_the_engines(tmp_path, capsys):
    import av
    import numpy as np
    from PIL import Image

    from rtstyle.api import load_scheduled_stylizer
    from rtstyle.config import EngineConfig
    from rtstyle.stylizers.schedule import CrossFadeStylizer, StyleSchedule

    rng = np.random.default_rng(3)
    picture = tmp_path / "photo.png"
    Image.fromarray(rng.integers(0, 255, (6, 8, 3), dtype=np.uint8)).resize((256, 192), Image.NEAREST).save(picture)
    text = f"0:mosaic,1:starry-swirl,2:{picture}"
    stylizer = load_scheduled_stylizer("arbitrary", StyleSchedule.parse(text), engine=EngineConfig(device="cpu"))
    assert isinstance(stylizer, CrossFadeStylizer)
    frame = rng.integers(0, 255, (64, 96, 3), dtype=np.uint8)
    at = {}
    for seconds in (1.0, 1.5, 2.0):
        stylizer.before_batch(seconds)
        at[seconds] = stylizer([frame])[0].astype(np.float64)
    quality, arbitrary = stylizer.engines["quality"], stylizer.engines["arbitrary"]
    quality.set_blend({"starry-swirl": 1.0})
    arbitrary.set_blend({str(picture): 1.0})
    starry, painted = quality([frame])[0].astype(np.float64), arbitrary([frame])[0].astype(np.float64)
    assert np.abs(starry - painted).mean() > 20  # two different looks...
    assert np.array_equal(at[1.0], starry) and np.array_equal(at[2.0], painted)  # ...each exact at its key
    assert np.abs(at[1.5] - (starry + painted) / 2).max() <= 1  # half way: the even cross-fade

    # The whole way through the CLI, smoothing included: every frame made, in time order.
    clip = write_clip(tmp_path / "in.mp4", seconds=3.0, width=96, height=64, fps=8)
    out = tmp_path / "out.mp4"
    assert main(["stylize", str(clip), "-o", str(out), "--style-schedule", text, "--smooth", "ema", "-q",
                 "--device", "cpu"]) == 0, capsys.readouterr().err
    with av.open(str(out)) as video:
        assert sum(1 for _ in video.decode(video=0)) == 24


def test_stats_json_on_a_batch_is_refused_rather_than_left_unused(capsys, tmp_path, clip):
    code = main(["stylize", str(clip), str(clip), "-o", f"{tmp_path / 'out'}/", "--stats-json",
                 str(tmp_path / "s.json")])
    err = capsys.readouterr().err
    assert code == 2 and "--stats-json writes one file's timings" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()
