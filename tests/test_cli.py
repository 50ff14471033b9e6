"""The command line: happy paths, one-line errors with exit code 2, and Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import av
import pytest

from rtstyle import __version__
from rtstyle.cli.main import main
from rtstyle.model.styles import styles_dir


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_version_and_styles(capsys):
    assert main(["--version"]) == 0
    assert __version__ in capsys.readouterr().out
    code, out, _ = run(capsys, "styles")
    assert code == 0 and "starry-swirl" in out and "night-brush" in out and "26 built-in styles" in out
    code, out, _ = run(capsys, "styles", "--model", "fast", "--json")
    assert code == 0 and len(json.loads(out)["styles"]) >= 8


def test_a_reader_that_leaves_early_is_no_error():
    """`rtstyle styles | head -1`: stdout is a pipe nobody reads any more. The command stops quietly
    (exit 1, nothing on stderr), not with an internal error or Python's complaint at exit."""
    import os
    import subprocess
    import sys

    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first line is written
    try:
        done = subprocess.run([sys.executable, "-c", "import sys; from rtstyle.cli.main import main; "
                               "sys.exit(main(['styles']))"], stdout=write_end, stderr=subprocess.PIPE, text=True,
                              timeout=120)
    finally:
        os.close(write_end)
    assert done.returncode == 1 and done.stderr == "", done.stderr


def test_stylize_video_json_summary(capsys, clip, tmp_path):
    out = tmp_path / "o.mp4"
    code, stdout, _ = run(capsys, "stylize", clip, "-o", out, "--style", "mosaic", "--strength", "0.8",
                          "--batch", "5", "--device", "cpu", "--json")
    assert code == 0
    summary = json.loads(stdout)
    assert summary["frames"] == 48 and summary["width"] == 160 and not summary["interrupted"]
    with av.open(str(out)) as container:
        assert container.streams.audio and container.streams.video[0].frames == 48


def test_stylize_blend_with_adapter_file_and_default_output(capsys, tmp_path, shared_data):
    import shutil

    src = tmp_path / "cat.png"
    shutil.copy(shared_data / "content" / "chelsea.png", src)
    adapter = styles_dir("quality") / "woodcut.safetensors"
    code, out, err = run(capsys, "stylize", src, "--blend", f"mosaic:0.5,{adapter}:0.5", "--max-side", "120")
    assert code == 0, err
    assert (tmp_path / "cat_mosaic+woodcut.png").exists()


def error_line(capsys, *argv):
    code, out, err = run(capsys, *argv)
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize("args, message", [
    (["stylize", "{tmp}/missing.mp4", "-o", "{tmp}/o.mp4"], "input not found"),
    (["stylize", "{tmp}/notes.txt", "-o", "{tmp}/o.mp4"], "not a video or image"),
    (["stylize", "{clip}", "-o", "{tmp}/o.mp4", "--style", "picasso"], "unknown style 'picasso'; built-in styles"),
    (["stylize", "{clip}", "-o", "{tmp}/nowhere/o.mp4"], "output folder does not exist"),
    (["stylize", "{clip}", "-o", "/proc/o.mp4"], "cannot write"),
    (["stylize", "{clip}", "-o", "{tmp}/o.mp4", "--batch", "0"], "must be at least 1"),
    (["stylize", "{clip}", "-o", "{tmp}/o.mp4", "--batch", "many"], "expected a whole number"),
    (["stylize", "{clip}", "-o", "{tmp}/o.mp4", "--strength", "-1"], "between 0 and 2"),
    (["stylize", "{clip}", "-o", "{tmp}/o.mp4", "--crf", "99"], "crf must be between"),
    (["stylize", "{clip}", "-o", "{tmp}/o.mp4", "--blend", "mosaic=1"], "bad blend"),
    (["stylize", "{clip}", "-o", "{tmp}/o.mp4", "--style", "mosaic", "--blend", "a:1"], "not both"),
    (["stylize", "{clip}", "-o", "{tmp}/o.mp4", "--model", "huge"], "unknown model 'huge'"),
    (["stylize", "{clip}", "-o", "{tmp}/o.mp4", "--model", "fast", "--style", "{quality_adapter}"],
     "was made for base 'quality'"),
    (["stylize", "{clip}", "-o", "{tmp}/o.mp4", "--style", "{tmp}/fake.safetensors"], "not a readable"),
    (["stylize", "{clip}", "-o", "{tmp}/o.png"], "matching extension"),
])
def test_errors_are_one_line_exit_2_and_leave_nothing(capsys, tmp_path, clip, args, message):
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "fake.safetensors").write_bytes(b"garbage")
    values = {"tmp": tmp_path, "clip": clip, "quality_adapter": styles_dir("quality") / "mosaic.safetensors"}
    line = error_line(capsys, *[a.format(**values) for a in args])
    assert message in line
    assert not list(tmp_path.glob("o.*")) and not list(tmp_path.glob(".*rtstyle*"))


def test_no_cuda_is_a_clear_error(capsys, clip, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert "no CUDA GPU is usable" in error_line(capsys, "stylize", clip, "-o", tmp_path / "o.mp4", "--device", "cuda")


def test_ctrl_c_leaves_a_playable_file(tmp_path):
    """SIGINT mid-conversion: the frames read so far are written and the file plays."""
    from rtstyle.io.synthetic import write_clip

    src = write_clip(tmp_path / "long.mp4", seconds=20, width=320, height=180, fps=24)
    out = tmp_path / "partial.mp4"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "rtstyle.cli.main", "stylize", str(src), "-o", str(out),
                             "--device", "cpu", "--batch", "2"], stderr=subprocess.PIPE, text=True, env=env)
    # Interrupt once frames are being written: the partial file (renamed to `out` at the end) grows.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if sum(p.stat().st_size for p in tmp_path.glob("*partial*")) > 20_000:
            break
        time.sleep(0.1)
    assert proc.poll() is None, proc.stderr.read()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    with av.open(str(out)) as container:
        frames = sum(1 for _ in container.decode(video=0))
        assert container.streams.audio
    assert 0 < frames < 480


def test_info_reports_runtimes(capsys):
    code, out, _ = run(capsys, "info", "--json")
    report = json.loads(out)
    assert code == 0 and {"torch", "cuda", "onnxruntime", "tensorrt", "engine_cache"} <= set(report)


def test_export_writes_an_onnx_graph_that_matches_eager(capsys, tmp_path, engine_cache):
    np = pytest.importorskip("numpy")
    ort = pytest.importorskip("onnxruntime")
    import torch

    from rtstyle.model.loader import fuse, load_base
    from rtstyle.model.styles import load_style

    code, out, err = run(capsys, "export", "woodcut", "--backend", "onnx", "--device", "cpu", "--model", "fast",
                         "-o", tmp_path)
    assert code == 0, err
    graph = tmp_path / "woodcut-fast.onnx"
    assert graph.exists() and any(p.suffix == ".onnx" for p in engine_cache.iterdir())
    x = np.random.default_rng(0).random((1, 3, 48, 64), dtype=np.float32)
    ours = ort.InferenceSession(str(graph), providers=["CPUExecutionProvider"]).run(None, {"image": x})[0]
    with torch.no_grad():
        expected = fuse(load_base("fast"), [(load_style("woodcut", "fast"), 1.0)])(torch.from_numpy(x)).numpy()
    assert np.abs(ours - expected).max() < 1e-3


def test_an_existing_output_is_refused_asked_replaced_or_kept(capsys, clip, tmp_path, monkeypatch):
    out = tmp_path / "o.mp4"
    out.write_bytes(b"precious")
    # Not on a terminal (as here): refused in one line, nothing touched.
    assert "-y replaces it, -n leaves it" in error_line(capsys, "stylize", clip, "-o", out, "-q")
    code, _, err = run(capsys, "stylize", clip, "-o", out, "-n", "-q")
    assert code == 0 and "left as it is" in err and out.read_bytes() == b"precious"
    # On a terminal: asked; "n" keeps it, "y" replaces it.
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    monkeypatch.setattr("sys.stderr.isatty", lambda: True)
    monkeypatch.setattr("builtins.input", lambda prompt: "n")
    assert run(capsys, "stylize", clip, "-o", out, "-q")[0] == 2 and out.read_bytes() == b"precious"
    monkeypatch.setattr("builtins.input", lambda prompt: "y")
    assert run(capsys, "stylize", clip, "-o", out, "-q")[0] == 0 and out.stat().st_size > 1000
    monkeypatch.setattr("builtins.input", lambda prompt: pytest.fail("-y must not ask"))
    assert run(capsys, "stylize", clip, "-o", out, "-y", "-q")[0] == 0


def test_a_failure_while_running_exits_1_and_memory_gets_a_hint(capsys, monkeypatch):
    from rtstyle.cli import styles
    from rtstyle.cli.main import main
    from rtstyle.errors import PipelineError

    def out_of_memory(args):
        try:
            raise MemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        except MemoryError as exc:
            raise PipelineError("stylize stage failed: MemoryError: CUDA out of memory") from exc

    monkeypatch.setattr(styles, "run", out_of_memory)
    assert main(["styles"]) == 1
    line = capsys.readouterr().err.strip()
    assert "\n" not in line and "stylize stage failed" in line and "a smaller --batch" in line

    def broken(args):
        raise PipelineError("sink stage failed: RuntimeError: boom")

    monkeypatch.setattr(styles, "run", broken)
    assert main(["styles"]) == 1
    line = capsys.readouterr().err.strip()
    assert line == "rtstyle: error: sink stage failed: RuntimeError: boom"


def test_options_are_read_once_and_the_namespace_is_left_as_typed(tmp_path):
    """Nothing downstream rewrites what the user typed: the request is built from the namespace, which stays."""
    import copy
    import dataclasses

    from rtstyle.cli.main import build_parser
    from rtstyle.cli.stylize import StylizeRequest

    clip = tmp_path / "in.mp4"
    clip.write_bytes(b"")
    args = build_parser().parse_args(["stylize", "--ray", str(clip), "--style-image", "a.jpg:0.5,b.jpg:0.5"])
    typed = copy.deepcopy(vars(args))
    request = StylizeRequest.from_args(args)
    assert vars(args) == typed
    assert request.inputs == (str(clip),) and request.ray is not None and request.ray.address is None
    assert request.styles.model == "arbitrary" and request.styles.blend == "a.jpg:0.5,b.jpg:0.5"
    with pytest.raises(dataclasses.FrozenInstanceError):
        request.output = "elsewhere.mp4"
