"""Faces kept (`--faces`): what it keeps, what it leaves alone, how steady its mask is, and what it costs.

Photos with faces from ../shared/data/content (astronaut, kodim04, kodim15, kodim14: one face each in the
first three, small faces on a raft in the last), 6 built-in styles of the quality model (the default for
files), each stylized once and its faces then kept off / soft / keep (the stage works after the engine):

- face SSIM: SSIM of each face's crop (the box the detector found on the photo, grey levels) between the
  output and the photo;
- hit rate: of the photo's faces, how many the detector (both models) finds again on the output (IoU > 0.3);
- outside: the largest change, in levels, that keep makes outside the faces' masks against off.

A moving clip: the astronaut photo panned and zoomed at 640x480 (`io.synthetic.panned_frame`, whose exact
motion is known, so the true flow is too), stylized with the fast model (the live default) and mosaic.
Warping error (Lai et al. 2018) inside the face region, frames in 0..1: mean over pixel pairs of
|O_t - warp(O_t+1)|^2 with the exact flow, for the stylized frames alone, faces kept with the live stage
(short-range model every 3rd frame, tracked), and kept with a detection on every frame and no tracking;
the input's own error is the floor. Mask jitter: how far the mask's centre strays, frame to frame, from the
face's true motion, in pixels.

Added time per frame, live at 640x480: the stage as webcam runs it against one frame of the fast model.

Run: python benchmarks/faces.py
Writes benchmarks/results/faces.{json,md}, faces_sheet.jpg (6 styles x off / soft / keep on kodim04) and
faces_before_after.jpg.
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from rtstyle.api import load_stylizer
from rtstyle.config import EngineConfig
from rtstyle.io.images import read_image
from rtstyle.io.synthetic import pan_matrix, panned_frame
from rtstyle.model.styles import StyleChoice
from rtstyle.pipeline.faces import FaceStage, FaceTracker, face_mask

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
CONTENT = Path(__file__).resolve().parents[2] / "shared" / "data" / "content"
PHOTOS = ["astronaut", "kodim04", "kodim15", "kodim14"]
STYLES = ["mosaic", "starry-swirl", "comic-outline", "woodcut", "red-expression", "stained-glass"]
MODES = {"off": 0.0, "soft": 0.5, "keep": 1.0}
SHEET_PHOTO = "kodim04"
CLIP = (640, 480, 30, 90)  # width, height, fps, frames


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM of two grey crops (Wang et al. 2004: 11x11 Gaussian, sigma 1.5)."""
    import cv2

    a, b = a.astype(np.float64), b.astype(np.float64)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2

    def blur(x):
        return cv2.GaussianBlur(x, (11, 11), 1.5)

    ma, mb = blur(a), blur(b)
    va, vb, cov = blur(a * a) - ma * ma, blur(b * b) - mb * mb, blur(a * b) - ma * mb
    return float((((2 * ma * mb + c1) * (2 * cov + c2)) / ((ma * ma + mb * mb + c1) * (va + vb + c2))).mean())


def grey(rgb: np.ndarray) -> np.ndarray:
    return rgb @ np.array([0.299, 0.587, 0.114])


def crop(face, shape) -> tuple[slice, slice]:
    y0, y1 = max(0, round(face.cy - face.h / 2)), min(shape[0], round(face.cy + face.h / 2))
    x0, x1 = max(0, round(face.cx - face.w / 2)), min(shape[1], round(face.cx + face.w / 2))
    return slice(y0, y1), slice(x0, x1)


def photos_benchmark(stylizers: dict) -> tuple[list[dict], dict]:
    rows, sheet = [], {}
    for name in PHOTOS:
        photo = read_image(CONTENT / f"{name}.png")[0]
        finder = FaceStage(1.0)
        faces = finder.detect(photo)
        for style in STYLES:
            stylized = stylizers[style]([photo])[0]
            outputs = {}
            for mode, strength in MODES.items():
                stage = FaceStage(strength) if strength > 0 else None
                out = stage.apply(photo, stylized) if stage else stylized
                outputs[mode] = out
                found = finder.detect(out)
                hits = sum(any(f.iou(g) > 0.3 for g in found) for f in faces)
                scores = [ssim(grey(out[crop(f, photo.shape)]), grey(photo[crop(f, photo.shape)])) for f in faces]
                row = {"photo": name, "style": style, "faces": mode, "photo_faces": len(faces),
                       "face_ssim": round(float(np.mean(scores)), 4), "hit_rate": round(hits / max(1, len(faces)), 3)}
                if stage is not None:
                    mask, (r, c) = face_mask(photo.shape, stage.last)
                    outside = np.ones(photo.shape[:2], bool)
                    outside[r, c] = mask <= 0
                    row["outside_max_levels"] = int(np.abs(out.astype(int) - stylized)[outside].max())
                rows.append(row)
            if name == SHEET_PHOTO:
                sheet[style] = outputs
    return rows, sheet


def warp_error(outputs: list[np.ndarray], matrices: list[np.ndarray], regions: list[np.ndarray]) -> float:
    """Mean over pairs of |O_t - O_t+1 warped back to t|^2 inside `regions[t]`, with the exact motion."""
    import cv2

    errors = []
    for t in range(len(outputs) - 1):
        # pixel (u, v) of frame t is photo point A_t^-1 (u, v), which frame t+1 shows at A_t+1 A_t^-1 (u, v)
        a_t, a_next = np.vstack([matrices[t], [0, 0, 1]]), np.vstack([matrices[t + 1], [0, 0, 1]])
        back = (a_next @ np.linalg.inv(a_t))[:2].astype(np.float32)
        h, w = outputs[t].shape[:2]
        warped = cv2.warpAffine(outputs[t + 1], back, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                borderMode=cv2.BORDER_REPLICATE)
        diff = ((outputs[t].astype(np.float32) - warped) / 255.0) ** 2
        errors.append(float(diff.sum(axis=2)[regions[t]].mean()))
    return float(np.mean(errors))


def clip_benchmark(stylizer) -> dict:
    width, height, fps, count = CLIP
    photo = read_image(CONTENT / "astronaut.png")[0]
    centre = (226 / 512, 125 / 512 + 0.1)
    frames = [panned_frame(photo, i, width, height, fps, centre) for i in range(count)]
    matrices = [pan_matrix(photo.shape, i, width, height, fps, centre) for i in range(count)]
    stylized = [stylizer([f])[0] for f in frames]
    # The face's true place in each frame: the photo's face (found once, on the photo) carried by the motion.
    face = FaceStage(1.0).detect(photo)[0]
    truth = [m @ np.array([face.cx, face.cy, 1.0]) for m in matrices]
    regions = []
    for m in matrices:
        region = np.zeros((height, width), bool)
        scale = m[0, 0]
        cx, cy = m @ np.array([face.cx, face.cy, 1.0])
        y, x = np.ogrid[0:height, 0:width]
        region[((x - cx) / (0.6 * face.w * scale)) ** 2 + ((y - cy + 0.15 * face.h * scale)
                                                          / (0.75 * face.h * scale)) ** 2 < 1] = True
        regions.append(region)
    untracked = FaceStage(1.0, live=True, every=1)
    untracked.tracker = FaceTracker(hold=0, fade_frames=1, smoothing=0.0)
    stages = {"tracked (live: every 3rd frame)": FaceStage(1.0, live=True),
              "untracked (every frame, raw boxes)": untracked}
    result = {"input_floor": round(warp_error(frames, matrices, regions), 5),
              "stylized_alone": round(warp_error(stylized, matrices, regions), 5)}
    for label, stage in stages.items():
        outs, centres = [], []
        for frame, out in zip(frames, stylized):
            outs.append(stage.apply(frame, out))
            centres.append((stage.last[0].face.cx, stage.last[0].face.cy) if stage.last else (np.nan, np.nan))
        offsets = np.array(centres) - np.array(truth)
        jitter = np.linalg.norm(np.diff(offsets, axis=0), axis=1)
        result[label] = {"warp_error": round(warp_error(outs, matrices, regions), 5),
                         "mask_jitter_px_mean": round(float(np.nanmean(jitter)), 3),
                         "mask_jitter_px_p95": round(float(np.nanpercentile(jitter, 95)), 3),
                         "frames_with_mask": int(np.isfinite(offsets[:, 0]).sum())}
    return result


def timing(stylizer) -> dict:
    width, height, fps, count = CLIP
    photo = read_image(CONTENT / "astronaut.png")[0]
    centre = (226 / 512, 125 / 512 + 0.1)
    frames = [panned_frame(photo, i, width, height, fps, centre) for i in range(count)]
    stylized = [stylizer([f])[0] for f in frames[:10]]
    frame_ms = []
    for f in frames[10:40]:
        start = time.perf_counter()
        stylizer([f])
        frame_ms.append((time.perf_counter() - start) * 1000)
    stage = FaceStage(1.0, live=True)
    stage_ms, detect_ms = [], []
    for i, f in enumerate(frames):
        start = time.perf_counter()
        stage.apply(f, stylized[i % 10])
        stage_ms.append((time.perf_counter() - start) * 1000)
        if i < 30:
            start = time.perf_counter()
            stage.detectors[0].detect(f)
            detect_ms.append((time.perf_counter() - start) * 1000)
    frame, added, detect = float(np.median(frame_ms)), float(np.mean(stage_ms)), float(np.median(detect_ms))
    return {"live_frame_ms_median": round(frame, 2), "stage_ms_per_frame_mean": round(added, 2),
            "stage_share_of_frame": round(added / frame, 3), "detector_ms_median": round(detect, 2),
            "detector_share_of_frame_every_3rd": round(detect / 3 / frame, 3),
            "blend_ms_median_no_detection": round(float(np.median([s for i, s in enumerate(stage_ms) if i % 3])), 2)}


def contact_sheet(sheet: dict) -> None:
    import cv2

    tile = 240
    rows = []
    for style in STYLES:
        cells = [cv2.resize(sheet[style][mode], (tile, tile), interpolation=cv2.INTER_AREA) for mode in MODES]
        row = np.concatenate(cells, axis=1)
        label = np.full((tile, 130, 3), 255, np.uint8)
        cv2.putText(label, style, (6, tile // 2), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        rows.append(np.concatenate([label, row], axis=1))
    head = np.full((34, 130 + 3 * tile, 3), 255, np.uint8)
    for i, mode in enumerate(MODES):
        cv2.putText(head, f"--faces {mode}", (130 + i * tile + 60, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 1,
                    cv2.LINE_AA)
    picture = np.concatenate([head, *rows], axis=0)
    cv2.imwrite(str(RESULTS / "faces_sheet.jpg"), cv2.cvtColor(picture, cv2.COLOR_RGB2BGR),
                [cv2.IMWRITE_JPEG_QUALITY, 88])
    pair = np.concatenate([sheet["mosaic"]["off"], np.full((sheet["mosaic"]["off"].shape[0], 8, 3), 255, np.uint8),
                           sheet["mosaic"]["keep"]], axis=1)
    pair = cv2.resize(pair, (pair.shape[1] * 3 // 4, pair.shape[0] * 3 // 4), interpolation=cv2.INTER_AREA)
    cv2.imwrite(str(RESULTS / "faces_before_after.jpg"), cv2.cvtColor(pair, cv2.COLOR_RGB2BGR),
                [cv2.IMWRITE_JPEG_QUALITY, 88])


def markdown(report: dict) -> str:
    lines = [f"Faces kept, {report['machine']} (load {report['load_avg_1m']:.1f}); `python benchmarks/faces.py`.", "",
             "Photos (quality model), mean over the photos' faces; outside = largest change keep makes outside the "
             "masks, in levels:", "",
             "| photo | style | SSIM off | SSIM soft | SSIM keep | hits off | hits soft | hits keep | outside |",
             "|---|---|---|---|---|---|---|---|---|"]
    by = {(r["photo"], r["style"], r["faces"]): r for r in report["photos"]}
    for name in PHOTOS:
        for style in STYLES:
            o, s, k = (by[(name, style, m)] for m in MODES)
            lines.append(f"| {name} | {style} | {o['face_ssim']:.3f} | {s['face_ssim']:.3f} | {k['face_ssim']:.3f} | "
                         f"{o['hit_rate']:.2f} | {s['hit_rate']:.2f} | {k['hit_rate']:.2f} | "
                         f"{k['outside_max_levels']} |")
    means = report["means"]
    lines += ["", "| mean over all | SSIM | hit rate |", "|---|---|---|"]
    lines += [f"| {m} | {means[m]['face_ssim']:.3f} | {means[m]['hit_rate']:.2f} |" for m in MODES]
    clip = report["clip"]
    lines += ["", f"Moving clip (astronaut panned, {CLIP[0]}x{CLIP[1]}, {CLIP[3]} frames, fast model, mosaic): warping "
              "error inside the face (exact flow; lower is steadier), mask centre jitter against the true motion:", "",
              "| | warping error | jitter mean px | jitter p95 px | frames with a mask |", "|---|---|---|---|---|",
              f"| input (floor) | {clip['input_floor']:.5f} | | | |",
              f"| stylized alone | {clip['stylized_alone']:.5f} | | | |"]
    for label, value in clip.items():
        if isinstance(value, dict):
            lines.append(f"| keep, {label} | {value['warp_error']:.5f} | {value['mask_jitter_px_mean']:.2f} | "
                         f"{value['mask_jitter_px_p95']:.2f} | {value['frames_with_mask']}/{CLIP[3]} |")
    t = report["timing"]
    lines += ["", f"Live at 640x480: a fast-model frame {t['live_frame_ms_median']:.1f} ms; the face stage adds "
              f"{t['stage_ms_per_frame_mean']:.2f} ms a frame on average ({100 * t['stage_share_of_frame']:.1f} %): "
              f"the detector {t['detector_ms_median']:.2f} ms every 3rd frame "
              f"({100 * t['detector_share_of_frame_every_3rd']:.1f} % of a frame), the blend "
              f"{t['blend_ms_median_no_detection']:.2f} ms.", ""]
    return "\n".join(lines)


def main() -> None:
    threads = os.cpu_count() or 1
    stylizers = {style: load_stylizer("quality", StyleChoice({style: 1.0}), EngineConfig(device="cpu"))
                 for style in STYLES}
    photos, sheet = photos_benchmark(stylizers)
    fast = load_stylizer("fast", StyleChoice({"mosaic": 1.0}), EngineConfig(device="cpu"))
    report = {"machine": f"{platform.machine()} CPU, {threads} cores", "load_avg_1m": os.getloadavg()[0],
              "photos": photos,
              "means": {m: {"face_ssim": round(float(np.mean([r["face_ssim"] for r in photos if r["faces"] == m])), 4),
                            "hit_rate": round(float(np.mean([r["hit_rate"] for r in photos if r["faces"] == m])), 3)}
                        for m in MODES},
              "clip": clip_benchmark(fast), "timing": timing(fast)}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "faces.json").write_text(json.dumps(report, indent=1) + "\n")
    (RESULTS / "faces.md").write_text(markdown(report))
    contact_sheet(sheet)
    print(markdown(report))


if __name__ == "__main__":
    main()
