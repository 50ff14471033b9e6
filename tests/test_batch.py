"""Batches on one machine: folders mirrored, failures reported and passed over, resumed, one stylizer."""

from __future__ import annotations

import json

from rtstyle.cli.main import main


def batch(capsys, *argv) -> tuple[int, dict, str]:
    code = main(["stylize", *map(str, argv), "--model", "fast", "--json"])
    captured = capsys.readouterr()
    return code, json.loads(captured.out), captured.err


def test_a_folder_is_mirrored_and_a_broken_file_does_not_stop_it(tree, tmp_path, capsys, monkeypatch):
    import rtstyle.api

    builds = []
    real = rtstyle.api.load_stylizer
    monkeypatch.setattr(rtstyle.api, "load_stylizer", lambda *a, **k: builds.append(1) or real(*a, **k))
    out = tmp_path / "out"
    code, summary, _ = batch(capsys, tree, "-o", f"{out}/")
    assert code == 1  # one failed
    assert len(builds) == 1  # one stylizer for the whole batch
    status = {r["source"].removeprefix(str(tree) + "/"): r["status"] for r in summary["files"]}
    assert status == {"a.mp4": "done", "sub/b.mp4": "done", "sub/photo.png": "done", "sub/broken.mp4": "failed"}
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == [
        "a.mp4", "sub/b.mp4", "sub/photo.png"]
    failed = next(r for r in summary["files"] if r["status"] == "failed")
    assert "not a video or image file" in failed["error"]
    assert all(r["frames"] == 24 for r in summary["files"] if r["source"].endswith(("a.mp4", "b.mp4")))


def test_skip_existing_redoes_only_what_is_missing_or_incomplete(tree, tmp_path, capsys):
    out = tmp_path / "out"
    batch(capsys, tree, "-o", f"{out}/")
    (out / "a.mp4").unlink()
    (out / "sub" / "b.mp4").write_bytes((out / "sub" / "b.mp4").read_bytes()[:3000])  # cut short
    code, summary, _ = batch(capsys, tree, "-o", f"{out}/", "--skip-existing")
    status = {r["source"].removeprefix(str(tree) + "/"): r["status"] for r in summary["files"]}
    assert status == {"a.mp4": "done", "sub/b.mp4": "done", "sub/photo.png": "skipped", "sub/broken.mp4": "failed"}
    assert code == 1


def test_existing_outputs_in_a_batch_are_refused_unless_asked(tree, tmp_path, capsys):
    out = tmp_path / "out"
    batch(capsys, tree / "a.mp4", tree / "sub" / "b.mp4", "-o", f"{out}/")
    code, summary, _ = batch(capsys, tree / "a.mp4", tree / "sub" / "b.mp4", "-o", f"{out}/")
    assert code == 1 and {r["status"] for r in summary["files"]} == {"failed"}
    assert "-y replaces it" in summary["files"][0]["error"]
    code, summary, _ = batch(capsys, tree / "a.mp4", tree / "sub" / "b.mp4", "-o", f"{out}/", "-y")
    assert code == 0 and {r["status"] for r in summary["files"]} == {"done"}


def test_a_glob_and_a_missing_input(tree, tmp_path, capsys):
    code, summary, _ = batch(capsys, f"{tree}/**/*.mp4", "-o", f"{tmp_path / 'g'}/")
    assert summary["done"] == 2 and summary["failed"] == 1
    assert main(["stylize", str(tree / "nope*.mp4"), "-o", f"{tmp_path / 'x'}/"]) == 2


def test_ray_without_ray_installed_says_how_to_get_it(tree, tmp_path, capsys, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real(name, *a))
    assert main(["stylize", str(tree), "-o", f"{tmp_path / 'out'}/", "--ray"]) == 2
    assert "pip install 'rtstyle[cluster]'" in capsys.readouterr().err
    # --ray right before an input takes it as an input, not as an address
    assert main(["stylize", "--ray", str(tree / "a.mp4"), "-o", str(tmp_path / "one.mp4")]) == 2
    assert "--ray runs a batch" in capsys.readouterr().err
