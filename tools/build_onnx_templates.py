"""Build the ONNX templates of the built-in bases: rtstyle/model/assets/onnx/<base>.onnx.

A template is `StyleNet.transform` exported in fp32 with dynamic batch, height and width (by
`rtstyle.backends.onnx_export.export_onnx`, opset 17), with every state-dict tensor kept as an
ONNX initializer named by its state-dict key. The lean runtime (`rtstyle.model.templates`) puts
the fused weights of the chosen styles into those initializers, so it runs the network with
ONNX Runtime and numpy without importing torch or exporting anything.

The exporter names the weights after the module it was given (`PaddedStyleNet`, hence a
``net.`` prefix); the prefix is taken off here. Constant folding does not touch the weights
(they are graph inputs of Conv and InstanceNormalization), which `template_model` checks.

The graph is then rewritten for ONNX Runtime's CPU kernels (`tools/onnx_rewrites.py`:
the upsampling convs sub-pixel, the last conv in space-to-depth form; the same output, 1.2x the
speed). The new kernels are computed in the graph from the original initializers.

Beside each template it writes `<base>.styled.onnx`, the same graph with the norms as inputs (the
lean path's graph: the style is fed per batch).

Run: python tools/build_onnx_templates.py  (deterministic, a few seconds; rerun after changing
network.py or onnx_export.py, and commit the .onnx files)
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import onnx
from onnx_rewrites import rewrite_for_cpu  # beside this script

from rtstyle.backends.onnx_export import export_onnx
from rtstyle.model.loader import load_base
from rtstyle.model.network import BUILTIN_SPECS, StyleNet
from rtstyle.model.templates import SPEC_KEY, index_path, make_styled_graph, styled_template_path, template_path

log = logging.getLogger("build_onnx_templates")
PREFIX = "net."  # PaddedStyleNet's name for the wrapped StyleNet


def template_model(net: StyleNet) -> onnx.ModelProto:
    """The fp32 graph of `net.transform`, rewritten for the CPU, with its initializers named exactly like
    `net.state_dict()`."""
    model = onnx.load_from_string(export_onnx(net))
    renamed = {}
    for init in model.graph.initializer:
        if init.name.startswith(PREFIX):
            renamed[init.name] = init.name.removeprefix(PREFIX)
            init.name = renamed[init.name]
    for node in model.graph.node:
        for index, name in enumerate(node.input):
            node.input[index] = renamed.get(name, name)
    state = {key: tuple(tensor.shape) for key, tensor in net.state_dict().items()}
    found = {init.name: tuple(init.dims) for init in model.graph.initializer}
    if found != state:
        raise RuntimeError(f"the export does not keep the weights as named initializers: "
                         f"missing {sorted(set(state) - set(found))[:5]}, "
                         f"other {sorted(set(found) - set(state))[:5]}")
    # Two stride-2 convs and then one 2x upsampling per expand stage: the last conv's input sides
    # are always a multiple of 2 ** len(expand).
    model = rewrite_for_cpu(model, output_multiple=2 ** len(net.spec.expand))
    onnx.helper.set_model_props(model, {SPEC_KEY: net.spec.to_json()})
    onnx.checker.check_model(model)
    return model


def weightless(model: onnx.ModelProto, location: str) -> onnx.ModelProto:
    """The graph with every initializer marked external and its data dropped (the runtime supplies it)."""
    from onnx.external_data_helper import convert_model_to_external_data

    convert_model_to_external_data(model, all_tensors_to_one_file=True, location=location, size_threshold=0)
    for init in model.graph.initializer:
        init.ClearField("raw_data")
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bases", nargs="+", default=sorted(BUILTIN_SPECS))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for base_id in args.bases:
        base = load_base(base_id)
        model = template_model(base.build())
        path = Path(template_path(base_id))
        path.parent.mkdir(parents=True, exist_ok=True)
        index = {"spec": base.spec.to_json(),
                 "initializers": {init.name: list(init.dims) for init in model.graph.initializer}}
        path.write_bytes(weightless(model, f"{base_id}.weights").SerializeToString())
        styled_template_path(base_id).write_bytes(make_styled_graph(path.read_bytes()))
        index_path(base_id).write_text(json.dumps(index, indent=1, sort_keys=True) + "\n")
        log.info("%s: %d nodes, %d initializers, %d bytes -> %s", base_id, len(model.graph.node),
                 len(model.graph.initializer), path.stat().st_size, path)


if __name__ == "__main__":
    main()
