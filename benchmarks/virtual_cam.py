"""Capture to virtual camera: the synthetic camera in real time through the live pipeline into the real
VirtualCameraSink and pyvirtualcam's Camera, with and without the preview window.

Without a v4l2loopback device (this container cannot load kernel modules), pyvirtualcam's native
v4l2loopback backend is replaced through its own `register_backend` by a stand-in that does what the
native one does per frame on the host: convert RGB to a YUV 4:2:0 frame and write it to a device
(here /dev/null). Everything above it (the sink, pyvirtualcam's checks and copies) is the real code.
With a device, the real backend is used and the results say so.

Rows with `--scale` stylize each frame at that fraction of its width and height and enlarge the
result, so the network works on fewer pixels (and paints larger strokes).

Latency is capture -> the frame handed to the virtual camera, timed at the camera sink itself (with the
preview on, the window is drawn first, so its cost is in the number). Run it with the CPU otherwise idle:
the load average is recorded.

A null-sink run (no camera, no window) is interleaved with the camera runs as the reference on the same,
shared CPU.

Run: python benchmarks/virtual_cam.py [--seconds 12] [--size 640x480] [--fps 30] [--repeats 2] [--threads N]
Writes benchmarks/results/virtual_cam_cpu.{json,md} and live_scale.jpg (one frame at each scale).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np

from rtstyle.api import stylize_live
from rtstyle.config import EngineConfig
from rtstyle.io.sinks import NullSink, Sink, VirtualCameraSink, Window
from rtstyle.io.sources import SyntheticSource
from rtstyle.pipeline.runner import StreamConfig

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
LOOPBACKS = Path("/sys/devices/virtual/video4linux")


class LoopbackStandIn:
    """pyvirtualcam backend protocol (keyword-only constructor, send/close/device/native_fourcc)."""

    def __init__(self, *, width: int, height: int, fps: float, fourcc: int, device: str | None, **kw):
        self.width, self.height = width, height
        self._fd = os.open(os.devnull, os.O_WRONLY)
        self.sent = 0
        self.seconds = 0.0

    def send(self, frame: np.ndarray) -> None:
        import cv2

        start = time.perf_counter()
        yuv = cv2.cvtColor(frame.reshape(self.height, self.width, 3), cv2.COLOR_RGB2YUV_I420)
        os.write(self._fd, yuv.tobytes())
        self.seconds += time.perf_counter() - start
        self.sent += 1

    def close(self) -> None:
        os.close(self._fd)

    def device(self) -> str:
        return "stand-in for /dev/videoN (no v4l2loopback here)"

    def native_fourcc(self) -> int | None:
        return None


class Timed(Sink):
    """Times capture -> handed to the sink it wraps."""

    def __init__(self, sink: Sink):
        self.sink, self.latencies = sink, []

    def write(self, frame, image) -> None:
        self.sink.write(frame, image)
        self.latencies.append(time.perf_counter() - frame.captured)

    def close(self) -> None:
        self.sink.close()


def busy_seconds() -> float:
    """CPU seconds all processes on the machine have spent busy (first line of /proc/stat); 0 elsewhere."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except OSError:
        return 0.0
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")  # less idle and iowait


def real_device() -> bool:
    return LOOPBACKS.is_dir() and any(LOOPBACKS.glob("video*"))


def start_display() -> subprocess.Popen | None:
    """An Xvfb for the preview where there is no display; None if one is there already."""
    if os.environ.get("DISPLAY"):
        return None
    if not shutil.which("Xvfb"):
        raise SystemExit("the preview run needs a display or Xvfb")
    read, write = os.pipe()
    server = subprocess.Popen(["Xvfb", f":{random.randint(300, 899)}", "-displayfd", str(write), "-screen", "0",
                               "1920x1080x24", "-nolisten", "tcp"], pass_fds=(write,), stderr=subprocess.DEVNULL)
    os.close(write)
    with os.fdopen(read) as pipe:
        os.environ["DISPLAY"] = f":{pipe.readline().strip()}"
    return server


# sink name -> (virtual camera on, preview window on, frames computed at once, --scale)
SINKS = {"null sink (reference)": (False, False, 1, 1.0), "virtual camera": (True, False, 1, 1.0),
         "virtual camera + preview": (True, True, 1, 1.0), "virtual camera, two frames at once": (True, False, 2, 1.0),
         "virtual camera, --scale 0.75": (True, False, 1, 0.75), "virtual camera, --scale 0.6": (True, False, 1, 0.6),
         "virtual camera + preview, --scale 0.6": (True, True, 1, 0.6),
         "virtual camera, --scale 0.5": (True, False, 1, 0.5),
         "virtual camera, --scale auto": (True, False, 1, "auto")}


def run(args, name: str) -> dict:
    camera_on, preview, parallel_frames, scale = SINKS[name]
    width, height = args.size
    source = SyntheticSource(width, height, fps=args.fps)
    sink = Timed(VirtualCameraSink(source.size, source.fps) if camera_on else NullSink())
    backend = sink.sink.camera._backend if camera_on else None  # pyvirtualcam drops it on close
    window = Window("rtstyle", source.size) if preview else None
    load_before, cpu_before, wall_before = os.getloadavg(), time.process_time(), time.perf_counter()
    busy_before = busy_seconds()
    engine = EngineConfig(device="cpu", threads=args.threads, parallel_frames=parallel_frames)
    result = stylize_live(source, "fast", ["starry-swirl"], engine=engine, record=sink, window=window,
                          preview=preview, duration=args.seconds,
                          config=StreamConfig(batch=1, live=True, scale=1.0 if scale == "auto" else scale,
                                              fit_scale=scale == "auto"))
    wall = time.perf_counter() - wall_before
    cores = (time.process_time() - cpu_before) / wall
    others = max(0.0, (busy_seconds() - busy_before) / wall - cores)
    skip = min(int(args.fps), len(sink.latencies) // 3)  # the first second (warm-up) left out
    ms = np.array(sink.latencies[skip:] or [float("nan")]) * 1000
    return {"sink": name, "preview": preview, "scale": scale, "scale_used": result.metrics["scale"],
            "size": f"{width}x{height}", "source_fps": args.fps,
            "frames": result.metrics["frames"], "fps": result.metrics["fps"], "drops": result.metrics["drops"],
            "capture_to_sink_ms": {"p50": round(float(np.percentile(ms, 50)), 1),
                                   "p95": round(float(np.percentile(ms, 95)), 1),
                                   "max": round(float(ms.max()), 1)},
            "camera_send_ms": round(1000 * backend.seconds / max(backend.sent, 1), 2)
            if isinstance(backend, LoopbackStandIn) else None,
            "stage_ms_per_frame": result.metrics["stage_ms_per_frame"],
            "cpu_cores_used": round(cores, 2),  # of the 2: less than the stylizer wants when others load the CPU
            "cpu_cores_others": round(others, 2),  # busy cores on the machine that were not this process
            "loadavg_before": [round(x, 2) for x in load_before],
            "loadavg_after": [round(x, 2) for x in os.getloadavg()]}


def main() -> None:
    import pyvirtualcam

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=12.0)
    parser.add_argument("--size", type=lambda s: tuple(int(v) for v in s.split("x")), default=(640, 480))
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--repeats", type=int, default=2, help="rounds of the runs, interleaved")
    parser.add_argument("--threads", type=int, help="engine threads (default: every core)")
    parser.add_argument("--results", type=Path, default=RESULTS, help="folder for the JSON and md")
    parser.add_argument("--report-only", action="store_true", help="rewrite the md from the JSON in --results")
    args = parser.parse_args()
    if args.report_only:
        saved = json.loads((args.results / "virtual_cam_cpu.json").read_text())
        args.seconds = saved["seconds"]
        return write_report(args, saved["rows"], "real" in saved["camera"], saved["pyvirtualcam"])
    real = real_device()
    if not real:
        pyvirtualcam.register_backend("v4l2loopback", LoopbackStandIn)
    server = start_display()
    rows = []
    try:
        for _ in range(args.repeats):
            for name in SINKS:
                rows.append(run(args, name))
                print(json.dumps(rows[-1]), flush=True)
    finally:
        if server is not None:
            server.terminate()
    write_report(args, rows, real, pyvirtualcam.__version__)
    write_picture(args.results / "live_scale.jpg", args.size)


def write_picture(path: Path, size: tuple[int, int]) -> None:
    """One frame of the benchmark's scene through the fast model at each scale the rows use, side by side."""
    import cv2

    from rtstyle.api import load_stylizer
    from rtstyle.io.synthetic import scene_frame
    from rtstyle.model.styles import StyleChoice
    from rtstyle.pipeline.scale import enlarge, shrink

    stylizer = load_stylizer("fast", StyleChoice({"starry-swirl": 1.0}), EngineConfig(device="cpu"))
    frame = scene_frame(90, *size)
    panels = []
    for scale in sorted({entry[3] for entry in SINKS.values() if entry[3] != "auto"}, reverse=True):
        panel = np.ascontiguousarray(enlarge(stylizer(shrink([frame], scale)), [frame])[0][..., ::-1])
        cv2.putText(panel, f"--scale {scale:g}", (12, 36), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (0, 0, 0), 5, cv2.LINE_AA)
        cv2.putText(panel, f"--scale {scale:g}", (12, 36), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (255, 255, 255), 2,
                    cv2.LINE_AA)
        panels.append(panel)
    cv2.imwrite(str(path), np.concatenate(panels, axis=1), [cv2.IMWRITE_JPEG_QUALITY, 90])


def write_report(args, rows: list[dict], real: bool, version: str) -> None:
    device = f"{platform.machine()} CPU, {os.cpu_count()} cores"
    camera = "a real v4l2loopback device" if real else (
        "pyvirtualcam with its v4l2loopback backend replaced by a stand-in (RGB -> I420 with OpenCV, written "
        "to /dev/null): no v4l2loopback device here")
    threads = args.threads or "every core"
    report = {"device": device, "model": "fast", "engine": "auto (ONNX Runtime on this CPU)",
              "engine_threads": threads, "camera": camera,
              "pyvirtualcam": version, "seconds": args.seconds, "rows": rows}
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "virtual_cam_cpu.json").write_text(json.dumps(report, indent=2))
    lines = [f"Capture to virtual camera on {device}: synthetic camera in real time, fast model "
             f"(engine threads: {threads}), "
             f"{args.seconds:g} s per run, runs interleaved (the first second left out of the latency).", "",
             f"Virtual camera: {camera}. Latency is capture -> the frame handed to the sink (the camera, or "
             "the null sink of the reference run); with the preview on, the window (under Xvfb) is drawn first. "
             "Cores: CPU time per second of wall time, this process / everything else on the machine "
             "(/proc/stat); other jobs share these two cores.", "",
             "On the CPU the stylizer computes while it is submitted, and the runner hands a finished batch on "
             "at once, so the latency holds one stylizer call plus the wait for the camera's next frame. With two "
             "frames at once (`--parallel-frames 2`), a frame that arrives while another computes starts at once "
             "on the other half of the cores: more frames per second, each on fewer cores.", "",
             "| sink | fps | capture->sink p50 ms | p95 ms | max ms | dropped | stylize ms/frame "
             "| camera send ms | cores: this / others | load avg (1 min) before / after |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---|---|"]
    for r in rows:
        lat = r["capture_to_sink_ms"]
        chose = f" (chose {r['scale_used']:g})" if r.get("scale") == "auto" else ""
        lines.append(f"| {r['sink']}{chose} | {r['fps']:.1f} | {lat['p50']:.0f} | {lat['p95']:.0f} | "
                     f"{lat['max']:.0f} | "
                     f"{r['drops']} | {r['stage_ms_per_frame'].get('stylize', 0):.1f} | "
                     f"{r['camera_send_ms'] if r['camera_send_ms'] is not None else '-'} | "
                     f"{r['cpu_cores_used']} / {r['cpu_cores_others']} | "
                     f"{r['loadavg_before'][0]} / {r['loadavg_after'][0]} |")
    verdicts = []
    for scale in dict.fromkeys(r.get("scale", 1.0) for r in rows):
        camera_rows = [r for r in rows if r["sink"] != "null sink (reference)" and r.get("scale", 1.0) == scale]
        met = all(r["fps"] >= 25 and r["capture_to_sink_ms"]["p95"] <= 60 for r in camera_rows)
        verdicts.append(f"{'at full size' if scale == 1 else f'with --scale {scale}'}: "
                        f"{'met' if met else 'not met'} ({len(camera_rows)} runs)")
    lines += ["", "Target on this CPU (issue 16): virtual camera >= 25 fps at p95 <= 60 ms; "
                  + "; ".join(verdicts) + ".", "",
              "`--scale S` stylizes each frame at S times its width and height and enlarges the result "
              "(`rtstyle/pipeline/scale.py`): S^2 of the pixels through the network, larger strokes and softer "
              "detail; [live_scale.jpg](live_scale.jpg) shows one frame at each scale."]
    (args.results / "virtual_cam_cpu.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
