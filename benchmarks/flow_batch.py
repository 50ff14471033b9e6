"""The flow smoother's cost per frame when a batch's flows are made at once (`flow.BatchFlows`).

The torch flow smoother (the GPU path's, here on the CPU) and the host one smooth the same frames
(the first 25 of big_buck_bunny_cut, resized to each size) in batches of 8 and one frame at a time,
alternately in one run, so both see the same machine. Only the smoother is timed (the stylized
frames are made up).

Run: python benchmarks/flow_batch.py   (about 1 min on 2 CPU cores)
Writes benchmarks/results/flow_batch.json.
"""

from __future__ import annotations

import json
import os
import time

import cv2
import numpy as np
import torch
from temporal import DATA, RESULTS

from rtstyle.io.video import VideoReader
from rtstyle.temporal.host import make_host_smoother
from rtstyle.temporal.smoothers import make_smoother

SIZES = ((640, 480), (1920, 1080))
BATCH = 8


def frames_at(size: tuple[int, int], count: int = 3 * BATCH + 1) -> list[np.ndarray]:
    with VideoReader(DATA / "video" / "big_buck_bunny_cut.mp4") as reader:
        return [cv2.resize(f.image, size, interpolation=cv2.INTER_LINEAR) for _, f in zip(range(count), reader)]


def per_frame_ms(path: str, frames: list[np.ndarray], batch: int) -> float:
    rng = np.random.default_rng(0)
    stylized = [rng.random((*f.shape[:2], 3), dtype=np.float32) for f in frames]
    smoother = make_host_smoother("flow", 0.7) if path == "host" else make_smoother("flow", 0.7)
    smoother.apply_batch(frames[:1], *prepare(path, frames[:1], stylized[:1]))  # starts the state
    batches = [(frames[i:i + batch], prepare(path, frames[i:i + batch], stylized[i:i + batch]))
               for i in range(1, len(frames), batch)]
    start = time.perf_counter()
    for images, arrays in batches:
        smoother.apply_batch(images, *arrays)
    return 1000 * (time.perf_counter() - start) / (len(frames) - 1)


def prepare(path: str, images: list[np.ndarray], stylized: list[np.ndarray]) -> tuple:
    if path == "host":
        return (np.stack(stylized),)
    contents = torch.stack([torch.from_numpy(f).permute(2, 0, 1) / 255.0 for f in images])
    return contents, torch.stack([torch.from_numpy(s).permute(2, 0, 1) for s in stylized])


def main() -> None:
    report = {"cores": os.cpu_count(), "batch": BATCH, "rows": []}
    for size in SIZES:
        frames = frames_at(size)
        for path in ("torch", "host"):
            times = {1: [], BATCH: []}
            for _ in range(5):
                for batch in times:
                    times[batch].append(per_frame_ms(path, frames, batch))
            row = {"size": f"{size[0]}x{size[1]}", "path": path, "one_at_a_time_ms": float(np.median(times[1])),
                   "batched_ms": float(np.median(times[BATCH]))}
            row["ratio"] = row["one_at_a_time_ms"] / row["batched_ms"]
            report["rows"].append(row)
            print(json.dumps(row), flush=True)
    (RESULTS / "flow_batch.json").write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
