"""Engines that run a fused network: one module per backend.

`base.py` holds the torch engines' interface and registry (`create_engine`); `onnx_cpu.py` is the
ONNX Runtime CPU session of the lean path (stylizers/lean.py), which imports no torch. Nothing is
imported here, so that importing one backend module never pulls in another's dependencies.
"""
