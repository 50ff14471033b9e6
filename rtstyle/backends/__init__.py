"""Backends run a fused, plain `Stylizer` on one device. See `base.py` for the interface."""

from .base import Engine, create_engine, resolve_device

__all__ = ["Engine", "create_engine", "resolve_device"]
