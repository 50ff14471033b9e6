"""Engines that run a fused network: one module per backend.

`base.py` holds the torch engines' interface and registry (`create_engine`); `onnx_cpu.py` is the
lean CPU path, which imports no torch. Nothing is imported here, so that importing one backend
module never pulls in another's dependencies.
"""
