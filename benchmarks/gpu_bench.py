"""The GPU session in one process: engine speed and parity, end to end, live latency, training.

Made to fit one device call (`benchmarks/gpu_session.sh`): sections run in order of what matters
most, each inside the time left (`--budget`), and the summary is rewritten after every section,
so a call cut short still brings back everything finished before the cut.

Sections:
- engines: model-only fps at 1080p batch 8 and 720p batch 1, per model, engine and precision (and
  `compile` with the outer convs in space-to-depth form, an experiment: compile-s2d4, compile-s2d2), on
  eight real photos (shared/data/content) already on the GPU; warm-up (compilation, CUDA graph
  capture, cuDNN's choices) outside the timed region; CUDA-synchronised wall time.
- parity: each engine's output on those photos against eager fp32 with TF32 off; fp16 engines on
  extreme 4K frames (black, white, saturated, noise) must stay finite.
- profile: torch.profiler over one 1080p batch 8 of the quality model, top kernels by GPU time.
- end_to_end: each stage alone on one 1080p clip with audio (the shared film excerpt enlarged):
  decode, stylize with host memory in and out, encode on the frames the pipeline really wrote; then
  file to file through the real pipeline with one encoder and with `--encoders auto`, the bitrate
  beside each fps, and the efficiency (end-to-end fps over the slowest stage alone).
- live: the synthetic camera in real time (720p at 60 fps, 1080p at 30 fps), batch 1, live queues.
- training: distill mode, fast model, 256 px, images per second.

Run: python benchmarks/gpu_bench.py --out DIR [--budget SECONDS]
Writes DIR/gpu_summary.json (and the profile table beside it).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time
import traceback
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

from rtstyle.backends.base import create_engine
from rtstyle.config import ConvertConfig, EngineConfig
from rtstyle.model.loader import fuse, load_base
from rtstyle.model.styles import StyleChoice

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / ".." / "shared" / "data"
STYLE = "starry-swirl"
# "compile-autotune": the compiled engine with Inductor's Triton convolution templates timed against
# cuDNN's (max_autotune), for the A/B in one run.
# compile-s2d4 / -s2d2: the compiled engine on the network with its outer convs in space-to-depth form
# (tools/torch_rewrites.py), against plain `compile` in the same run.
ENGINES = [("torch", "fp32"), ("torch", "fp16"), ("compile", "fp16"), ("compile-s2d4", "fp16"),
           ("compile-s2d2", "fp16"), ("compile-autotune", "fp16")]
log = logging.getLogger("gpu_bench")


class Session:
    """Where results go, the time left, and the device. `smoke` runs every section on the CPU at a
    tenth of the size in fp32: a check of this script itself before it spends device minutes."""

    def __init__(self, out: Path, budget: float, smoke: bool = False):
        self.out = out
        self.deadline = time.perf_counter() + budget
        self.smoke = smoke
        self.clip_frames = 300
        self.engines = ENGINES
        self.device = "cpu" if smoke else "cuda"
        self.summary: dict = {"device": "smoke test on CPU" if smoke else torch.cuda.get_device_name(),
                              "torch": torch.__version__,
                              "cuda": torch.version.cuda, "cpu_cores": os.cpu_count(), "engines": [],
                              "end_to_end": [], "live": [], "parity": [], "not_run": [], "sections": {}}

    def left(self) -> float:
        return self.deadline - time.perf_counter()

    def save(self) -> None:
        (self.out / "gpu_summary.json").write_text(json.dumps(self.summary, indent=2))

    def section(self, name: str, fn, needs: float) -> None:
        if self.left() < needs:
            self.summary["not_run"].append(f"{name}: {self.left():.0f} s left of the budget, needs ~{needs:.0f} s")
            self.save()
            return
        start = time.perf_counter()
        print(f"== {name} ({self.left():.0f} s left)", flush=True)
        try:
            fn(self)
        except Exception as exc:  # noqa: BLE001 - a failed section is reported, the rest still runs
            traceback.print_exc()
            self.summary["not_run"].append(f"{name}: failed: {exc.__class__.__name__}: {str(exc)[:300]}")
        self.summary["sections"][name] = round(time.perf_counter() - start, 1)
        self.save()


    def size(self, width: int, height: int) -> tuple[int, int]:
        return (width // 10 // 4 * 4, height // 10 // 4 * 4) if self.smoke else (width, height)

    def precision(self, precision: str) -> str:
        return "fp32" if self.smoke else precision

    def sync(self) -> None:
        if not self.smoke:
            torch.cuda.synchronize()


def photos(s: Session, width: int, height: int, count: int = 8) -> torch.Tensor:
    """`count` real photos resized to width x height, (N, 3, H, W) float32 0..1 on the device."""
    from PIL import Image

    paths = sorted((DATA / "content").glob("*.png"))[:count]
    images = [np.asarray(Image.open(p).convert("RGB").resize((width, height), Image.BICUBIC)) for p in paths]
    return torch.from_numpy(np.stack(images)).to(s.device).permute(0, 3, 1, 2).float().div(255)


def build(s: Session, net, backend: str, precision: str):
    if backend.startswith("compile-s2d"):
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
        from torch_rewrites import outer_convs_space_to_depth

        net, backend = outer_convs_space_to_depth(net, int(backend.removeprefix("compile-s2d"))), "compile"
    if backend == "compile-autotune":
        from rtstyle.backends.base import resolve_dtype
        from rtstyle.backends.compiled import CompiledEngine

        device = torch.device(s.device)
        return CompiledEngine(net, device, resolve_dtype(precision, device), EngineConfig(autotune=True))
    return create_engine(net, EngineConfig(backend=backend, device=s.device, precision=precision))


def fused_model(model: str):
    return fuse(load_base(model), StyleChoice({STYLE: 1.0}).resolve(model))


def timed_fps(s: Session, engine, batch: torch.Tensor, seconds: float = 2.0) -> float:
    """Frames per second of `engine` on `batch`: median of 3 synchronised runs of ~seconds/3."""
    engine(batch)
    s.sync()
    start = time.perf_counter()
    engine(batch)
    s.sync()
    once = max(time.perf_counter() - start, 1e-4)
    calls = max(3, int(seconds / 3 / once))
    rates = []
    for _ in range(3):
        s.sync()
        start = time.perf_counter()
        for _ in range(calls):
            engine(batch)
        s.sync()
        rates.append(calls * batch.shape[0] / (time.perf_counter() - start))
    return statistics.median(rates)


def engines_and_parity(s: Session) -> None:
    shapes = [(8, *s.size(1920, 1080)), (1, *s.size(1280, 720))]
    for model in ("quality", "fast"):
        net = fused_model(model)
        torch.backends.cudnn.allow_tf32 = False  # the reference is true fp32
        reference_engine = create_engine(net, EngineConfig(backend="torch", device=s.device, precision="fp32"))
        real = photos(s, *shapes[0][1:])
        with torch.inference_mode():
            reference = reference_engine(real).float()
        del reference_engine
        torch.backends.cudnn.allow_tf32 = True
        for backend, precision in s.engines:
            precision = s.precision(precision)
            start = time.perf_counter()
            engine = build(s, net, backend, precision)
            for batch, width, height in shapes[:1] if backend == "compile-autotune" else shapes:
                warm = time.perf_counter()
                engine.warm_up(batch, height, width)
                warm = time.perf_counter() - warm
                frames = (real if batch == 8 else photos(s, width, height))[:batch]
                fps = timed_fps(s, engine, frames.to(engine.dtype))
                row = {"model": model, "engine": backend, "precision": precision, "batch": batch, "width": width,
                       "height": height, "fps": round(fps, 1), "warm_up_s": round(warm, 1),
                       "describe": engine.describe()}
                s.summary["engines"].append(row)
                print(json.dumps(row), flush=True)
            with torch.inference_mode():
                out = engine(real.to(engine.dtype)).float()
            diff = (out - reference).abs()
            levels = ((out.clamp(0, 1) * 255).round() - (reference.clamp(0, 1) * 255).round()).abs()
            parity = {"model": model, "engine": backend, "precision": precision,
                      "input": f"8 photos at {shapes[0][1]}x{shapes[0][2]}",
                      "max_abs": round(diff.max().item(), 5), "mean_abs": round(diff.mean().item(), 6),
                      "p99_99_abs": round(torch.quantile(diff.flatten()[::97], 0.9999).item(), 5),
                      "share_off_by_more_than_1_level": round((levels > 1).float().mean().item(), 7),
                      "build_and_warm_up_s": round(time.perf_counter() - start, 1)}
            s.summary["parity"].append(parity)
            print(json.dumps(parity), flush=True)
            s.save()
            del engine
            empty_cache(s)


def empty_cache(s: Session) -> None:
    if not s.smoke:
        torch.cuda.empty_cache()


def extremes_4k(s: Session) -> None:
    width, height = s.size(3840, 2160)
    gen = torch.Generator(device=s.device).manual_seed(0)
    frames = {"black": torch.zeros(1, 3, height, width, device=s.device),
              "white": torch.ones(1, 3, height, width, device=s.device),
              "saturated": torch.tensor([1.0, 0.0, 1.0], device=s.device).view(1, 3, 1, 1).expand(1, 3, height, width),
              "noise": torch.rand(1, 3, height, width, device=s.device, generator=gen)}
    precision = s.precision("fp16")
    for model in ("quality", "fast"):
        net = fused_model(model)
        for backend in ("torch", "compile"):
            engine = create_engine(net, EngineConfig(backend=backend, device=s.device, precision=precision))
            with torch.inference_mode():
                finite = {name: bool(torch.isfinite(engine(f.to(engine.dtype).contiguous())).all())
                          for name, f in frames.items()}
            row = {"model": model, "engine": backend, "precision": precision, "input": f"{width}x{height} extremes",
                   "finite": finite, "all_finite": all(finite.values())}
            s.summary["parity"].append(row)
            print(json.dumps(row), flush=True)
            del engine
            empty_cache(s)


def profile(s: Session) -> None:
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    width, height = s.size(1920, 1080)
    batch = photos(s, width, height)
    tables = {}
    activities = [ProfilerActivity.CPU] if s.smoke else [ProfilerActivity.CUDA, ProfilerActivity.CPU]
    for model, backend in (("quality", "torch"), ("quality", "compile"), ("fast", "compile")):
        net = fused_model(model)
        engine = create_engine(net, EngineConfig(backend=backend, device=s.device, precision=s.precision("fp16")))
        engine.warm_up(8, height, width)
        half = batch.to(engine.dtype)
        engine(half)
        s.sync()
        with torch_profile(activities=activities) as prof:
            engine(half)
            s.sync()
        averages = prof.key_averages()
        (s.out / f"profile_{model}_{backend}.txt").write_text(
            averages.table(sort_by="self_device_time_total", row_limit=25))
        kernels = sorted((e for e in averages if getattr(e, "self_device_time_total", 0) > 0
                          and not e.key.startswith(("aten::", "cuda", "Memcpy", "Memset", "ProfilerStep"))),
                         key=lambda e: e.self_device_time_total, reverse=True)
        total = sum(e.self_device_time_total for e in kernels)
        tables[f"{model}/{backend}"] = {
            "gpu_ms_total": round(total / 1000, 3),
            "top": [{"kernel": e.key[:120], "ms": round(e.self_device_time_total / 1000, 3),
                     "share": round(e.self_device_time_total / max(total, 1), 3), "calls": e.count}
                    for e in kernels[:12]]}
        del engine
    s.summary["profile"] = {"batch": 8, "size": f"{width}x{height}", "precision": s.precision("fp16"), **tables}


def make_clip(path: Path, width: int, height: int, frames: int, fps: int = 30) -> Path:
    """An H.264 clip with an AAC tone: the synthetic scene, 30 rendered frames cycled."""
    import av

    from rtstyle.io.synthetic import _write_tone, scene_frame

    cycle = [scene_frame(i, width, height, fps) for i in range(30)]
    with av.open(str(path), mode="w") as container:
        video = container.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.options = {"preset": "veryfast", "crf": "18"}
        tone = container.add_stream("aac", rate=44100)
        tone.layout = "stereo"
        for index in range(frames):
            frame = av.VideoFrame.from_ndarray(cycle[index % len(cycle)], format="rgb24")
            frame.pts, frame.time_base = index, Fraction(1, fps)
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
        _write_tone(container, tone, frames / fps, 44100)
    return path


def e2e_clip(s: Session, folder: Path) -> Path:
    """The end-to-end clip: the shared film excerpt enlarged to 1080p and played `clip_frames` long
    (its 240 frames looped, audio copied by each pass), else the synthetic scene."""
    from encoders import CLIP, enlarge_clip

    width, height = s.size(1920, 1080)
    if not CLIP.exists():
        return make_clip(folder / "in.mp4", width, height, s.clip_frames)
    return enlarge_clip(CLIP, (width, height), folder, frames=s.clip_frames)


def end_to_end(s: Session) -> None:
    """Each stage alone on the same clip, then file to file with one encoder and with several.

    Stages (issue #25): decode (RGB out, as the pipeline reads); stylize with frames in and out of host
    memory; encode on the frames the first run really wrote (decoded back), from RGB and from the
    yuv420p planes the GPU path hands over; and, for comparison with runs 1-3 only, the old figure:
    one frame written over and over. Efficiency: end-to-end fps over the slowest stage alone.
    """
    import av
    from encoders import encode, source_frames, stylize_all, to_yuv420p

    from rtstyle.api import load_stylizer
    from rtstyle.jobs.convert import convert_file

    s.summary["av"] = {"version": av.__version__,
                       "hardware_codecs": sorted(c for c in av.codecs_available
                                                 if any(k in c for k in ("nvenc", "cuvid", "nvdec", "qsv", "vaapi")))}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        clip = e2e_clip(s, folder)
        frames, info, decode_fps = source_frames(clip, None)
        seconds = len(frames) / float(info.rate)
        stages: dict = {"clip": clip.name, "frames": len(frames), "width": info.width, "height": info.height,
                        "decode_rgb_fps": round(decode_fps, 1)}
        for model in ("quality", "fast"):
            stylizer = load_stylizer(model, StyleChoice({STYLE: 1.0}), EngineConfig(device=s.device))
            first = folder / f"first-{model}.mp4"
            runs = []
            for encoders in (1, "auto"):
                for smooth in ("none", "flow") if model == "quality" else ("none",):
                    if encoders == "auto" and smooth == "flow":
                        continue
                    out = first if (encoders, smooth) == (1, "none") else folder / f"out-{model}.mp4"
                    config = ConvertConfig(batch=8, smooth=smooth, encoders=encoders)
                    result = convert_file(clip, out, stylizer, config)
                    with av.open(str(out)) as check:
                        streams = [st.type for st in check.streams]
                        decoded = sum(1 for _ in check.decode(video=0))
                    row = {"model": model, "width": info.width, "height": info.height, "codec": "libx264",
                           "smooth": smooth, "encoders": encoders, "engine": stylizer.describe(),
                           "frames": result.frames, "decoded_back": decoded, "streams": streams,
                           "fps": round(result.fps, 1), "mbit_s": round(out.stat().st_size * 8 / seconds / 1e6, 1),
                           "stage_ms_per_frame": (result.metrics or {}).get("stage_ms_per_frame")}
                    runs.append(row)
                    s.summary["end_to_end"].append(row)
                    print(json.dumps(row), flush=True)
                    s.save()
            _, stylize_io_fps = stylize_all(frames, stylizer, 8)
            written, _, _ = source_frames(first, None)  # what the encoder really got, as it decodes back
            encode_rgb = encode(written, info, folder / "enc-rgb.mp4")
            encode_yuv = encode(to_yuv420p(written, info), info, folder / "enc-yuv.mp4")
            repeated = encode([written[0]] * len(written), info, folder / "enc-repeated.mp4")
            slowest = min(decode_fps, stylize_io_fps, encode_yuv["fps"])
            stages[model] = {"stylize_host_io_fps": round(stylize_io_fps, 1), "encode_stylized_rgb": encode_rgb,
                             "encode_stylized_yuv420p": encode_yuv, "encode_one_frame_repeated_old": repeated,
                             "slowest_stage_fps": round(slowest, 1),
                             "efficiency_one_encoder": round(runs[0]["fps"] / slowest, 2)}
            print(json.dumps({model: stages[model]}), flush=True)
            s.summary["stages"] = stages
            s.save()
            del stylizer, written
            empty_cache(s)


def live(s: Session) -> None:
    from rtstyle.api import stylize_live
    from rtstyle.io.sources import SyntheticSource
    from rtstyle.pipeline.runner import StreamConfig

    for model in ("quality", "fast"):
        for width, height, fps, smooth in ((1280, 720, 60, "none"), (1920, 1080, 30, "none"), (1280, 720, 60, "flow")):
            if model == "fast" and smooth != "none":
                continue
            width, height = s.size(width, height)
            source = SyntheticSource(width, height, fps=fps, frames=int(6 * fps))
            result = stylize_live(source, model, [STYLE], engine=EngineConfig(device=s.device), smooth=smooth,
                                  preview=False, config=StreamConfig(batch=1, live=True))
            m = result.metrics
            row = {"model": model, "width": width, "height": height, "source_fps": fps, "smooth": smooth,
                   "output_fps": m["fps"], "p50_ms": m["latency_ms"]["p50"], "p95_ms": m["latency_ms"]["p95"],
                   "max_ms": m["latency_ms"]["max"], "drops": m["drops"], "frames": m["frames"],
                   "stage_ms_per_frame": m["stage_ms_per_frame"]}
            s.summary["live"].append(row)
            print(json.dumps(row), flush=True)
            s.save()


def training(s: Session) -> None:
    from rtstyle.train.trainer import TrainConfig, train

    with tempfile.TemporaryDirectory() as tmp:
        common = dict(style_dir=DATA / "styles_set" / "hiroshige_tokaido", content_dir=DATA / "content", mode="distill",
                      model="fast", batch=4, size=64 if s.smoke else 256, rank=16, lr=0.015, device=s.device,
                      sample_every=0,
                      checkpoint_every=10**9)
        train(TrainConfig(out=Path(tmp) / "warm.safetensors", steps=10, pool=16, **common))
        start = time.perf_counter()
        steps = 20 if s.smoke else 400
        result = train(TrainConfig(out=Path(tmp) / "run.safetensors", steps=steps, pool=256, **common))
        wall = time.perf_counter() - start
    steps_s = steps * 4 / result.images_per_second
    pool_s = max(wall - steps_s, 0.0)
    recipe = 9000 * 4 / result.images_per_second + pool_s * 2048 / 256
    s.summary["training"] = {"mode": "distill", "model": "fast", "batch": 4, "size": common["size"], "rank": 16,
                             "images_per_second": round(result.images_per_second, 1), "steps": steps,
                             "wall_s_with_pool_256": round(wall, 1),
                             "estimated_recipe_s": round(recipe, 0),
                             "recipe": "benchmarks/results/train_eval.json: 9000 steps, batch 4, pool 2048; "
                                       "estimate = steps at the measured rate + pool time scaled from 256 to 2048"}
    print(json.dumps(s.summary["training"]), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--budget", type=float, default=480.0, help="seconds for all sections together")
    parser.add_argument("--only", nargs="*", help="run only these sections")
    parser.add_argument("--smoke", action="store_true", help="check this script on the CPU, small and fp32")
    parser.add_argument("--clip-frames", type=int, default=300, help="frames of the end-to-end clip")
    parser.add_argument("--engines", nargs="*", help="engines section: only these backends")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    args.out.mkdir(parents=True, exist_ok=True)
    s = Session(args.out, args.budget, args.smoke)
    s.clip_frames = args.clip_frames
    s.engines = [e for e in ENGINES if not args.engines or e[0] in args.engines]
    sections = [("engines", engines_and_parity, 60), ("end_to_end", end_to_end, 40), ("live", live, 50),
                ("extremes_4k", extremes_4k, 40), ("profile", profile, 20), ("training", training, 40)]
    if args.only:  # in the order given
        sections = [next(section for section in sections if section[0] == name) for name in args.only]
    for name, fn, needs in sections:
        s.section(name, fn, needs)
    s.save()
    print(json.dumps({k: s.summary[k] for k in ("not_run", "sections")}, indent=1))


if __name__ == "__main__":
    main()
