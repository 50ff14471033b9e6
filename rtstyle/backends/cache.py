"""The compiled-engine cache: content-addressed files written atomically.

A key hashes everything that makes a cached artefact invalid: the exported graph bytes (which
hold the fused weights, so adapters and strengths are covered), precision, shape profile,
library versions and the GPU. A corrupt or stale file is never trusted: loaders that fail on a
cached file delete it and rebuild.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path


def default_cache_dir() -> Path:
    """$RTSTYLE_ENGINE_DIR, else the checkout's top-level engines/, else ~/.cache/rtstyle/engines."""
    if os.environ.get("RTSTYLE_ENGINE_DIR"):
        return Path(os.environ["RTSTYLE_ENGINE_DIR"])
    checkout = Path(__file__).resolve().parents[2] / "engines"
    if checkout.is_dir():
        return checkout
    return Path.home() / ".cache" / "rtstyle" / "engines"


def cache_key(*parts: bytes | str | dict) -> str:
    digest = hashlib.sha256()
    for part in parts:
        if isinstance(part, dict):
            part = json.dumps(part, sort_keys=True)
        digest.update(part.encode() if isinstance(part, str) else part)
        digest.update(b"\0")
    return digest.hexdigest()[:20]


def write_atomic(path: Path, data: bytes) -> None:
    """Write via a temporary file and rename, so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def list_cached(folder: Path | None = None) -> list[Path]:
    folder = folder or default_cache_dir()
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".") and p.name != "README.md")
