"""What this machine offers: torch, CUDA, cuDNN, GPUs, ONNX Runtime providers, TensorRT."""

from __future__ import annotations

import platform


def runtime_info() -> dict:
    from . import __version__

    report: dict = {
        "rtstyle": __version__,
        "python": platform.python_version(),
        "platform": f"{platform.system()} {platform.machine()}",
    }
    try:
        import torch
    except ImportError:
        report["torch"] = "not installed: the lean CPU path only (pip install 'rtstyle[torch]' for GPUs and training)"
    else:
        report.update(_torch_info(torch))
    try:
        import onnxruntime as ort

        report["onnxruntime"] = f"{ort.__version__} ({', '.join(ort.get_available_providers())})"
    except ImportError:
        report["onnxruntime"] = "not installed (pip install onnxruntime)"
    try:
        import tensorrt

        report["tensorrt"] = tensorrt.__version__
    except ImportError:
        report["tensorrt"] = "not installed (pip install 'rtstyle[tensorrt]')"
    report["preview window"] = _preview_window()
    return report


def _preview_window() -> str:
    """pygame-ce's version, read from its metadata: `info` imports no display library."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"pygame-ce {version('pygame-ce')} (SDL2)"
    except PackageNotFoundError:
        return "not installed (pip install 'rtstyle[live]')"


def _torch_info(torch) -> dict:
    return {
        "torch": torch.__version__,
        "cpu threads": torch.get_num_threads(),
        "cuda": torch.version.cuda if torch.cuda.is_available() else "not available",
        "cudnn": torch.backends.cudnn.version() if torch.cuda.is_available() else "-",
        "gpus": [f"{torch.cuda.get_device_name(i)} (sm_{''.join(map(str, torch.cuda.get_device_capability(i)))})"
                 for i in range(torch.cuda.device_count())] or "none",
    }
