"""Every file a command writes: -y / -n as for stylize, the usual permissions, and never the input by another path."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rtstyle.cli.main import main


def run(capsys, *argv) -> tuple[int, str]:
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err


def picture(path: Path, seed: int, size: tuple[int, int] = (96, 72)) -> Path:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (6, 8, 3), dtype=np.uint8)  # blocks of colour, enlarged: a picture with shapes
    Image.fromarray(base).resize(size, Image.NEAREST).save(path)
    return path


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def check_rule(capsys, argv: list, target: Path, replaced: bool = True) -> None:
    """`argv` writes `target`, which exists: refused in one line, kept with -n, replaced with -y."""
    target.write_bytes(b"precious")
    code, err = run(capsys, *argv)
    assert code == 2 and "exists; " in err and "-n leaves it" in err and len(err.strip().splitlines()) == 1, err
    assert target.read_bytes() == b"precious"
    code, err = run(capsys, *argv, "-n")
    assert code == 0 and "left as it is (-n)" in err and target.read_bytes() == b"precious"
    code, err = run(capsys, *argv, "-y")
    assert code == 0, err
    if replaced:
        assert target.read_bytes() != b"precious" and mode(target) == 0o644


def test_webcam_record_follows_the_overwrite_rule(capsys, tmp_path, umask_022):
    out = tmp_path / "rec.mp4"
    check_rule(capsys, ["webcam", "--synthetic", "--size", "96x64", "--fps", "10", "--no-preview", "--duration",
                        "0.5", "--model", "fast", "--device", "cpu", "--record", out], out)


def test_style_from_image_follows_the_overwrite_rule_and_is_readable_by_others(capsys, tmp_path, umask_022):
    style = picture(tmp_path / "style.png", 1)
    out = tmp_path / "mine.safetensors"
    check_rule(capsys, ["style-from-image", style, "-o", out], out)
    os.umask(0o027)  # the umask decides, not mkstemp's 0600
    fresh = tmp_path / "group.safetensors"
    assert run(capsys, "style-from-image", style, "-o", fresh)[0] == 0 and mode(fresh) == 0o640


def test_train_asks_before_starting_over_a_checkpoint(capsys, tmp_path, umask_022):
    styles, content = tmp_path / "styles", tmp_path / "content"
    styles.mkdir()
    content.mkdir()
    for i in range(5):
        picture(styles / f"s{i}.png", i, (80, 80))
        picture(content / f"c{i}.png", 10 + i, (96, 80))
    out = tmp_path / "a.safetensors"
    argv = ["train", "--style-dir", styles, "--content-dir", content, "--out", out, "--steps", "2", "--batch", "1",
            "--size", "64", "--pool", "2", "--device", "cpu", "--sample-every", "0", "--checkpoint-every", "1"]
    checkpoint = out.with_suffix(".ckpt.pt")
    check_rule(capsys, argv, checkpoint, replaced=False)
    assert out.is_file() and mode(out) == 0o644 and mode(checkpoint) == 0o644  # -y started over
    assert run(capsys, *argv, "--resume")[0] == 0  # --resume continues it, and may replace the adapter
    out.unlink()
    checkpoint.write_bytes(b"precious")
    code, err = run(capsys, *argv)
    assert code == 2 and "a training run to --resume" in err and "--resume continues it, -y starts over" in err


@pytest.mark.parametrize("how", ["hard link", "symlink"])
def test_y_never_replaces_the_input_reached_by_another_path(capsys, tmp_path, clip, how):
    src = tmp_path / "in.mp4"
    src.write_bytes(clip.read_bytes())
    before = src.read_bytes()
    out = tmp_path / "elsewhere" / "out.mp4"
    out.parent.mkdir()
    if how == "hard link":
        os.link(src, out)  # one file, two names, no symlink to resolve: only the inode tells
    else:
        out.symlink_to(src)
    code, err = run(capsys, "stylize", src, "-o", out, "-y", "-q", "--device", "cpu")
    assert code == 2 and "would overwrite the input" in err, err
    assert src.read_bytes() == before and os.path.samefile(src, out)
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]


def test_demo_and_export_copies_follow_the_overwrite_rule(capsys, tmp_path, umask_022):
    out = tmp_path / "demo.mp4"
    check_rule(capsys, ["demo", "-o", out, "--seconds", "1", "--model", "fast", "--device", "cpu"], out)
    folder = tmp_path / "graphs"
    folder.mkdir()
    argv = ["export", "woodcut", "--model", "fast", "--backend", "onnx", "--device", "cpu", "-o", folder]
    assert run(capsys, *argv)[0] == 0
    (copy,) = folder.iterdir()
    check_rule(capsys, argv, copy)
