"""Engines that run a fused network: one module per backend.

`base.py` holds the torch engines' interface and registry (`create_engine`). The lean path's ONNX
Runtime session, which needs no torch, is `model/ort_session.py`. Nothing is imported here, so that
importing one backend module never pulls in another's dependencies.
"""
