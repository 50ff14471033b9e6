"""The compiled-engine cache: files named by what they were built from, written atomically.

A file's key hashes everything that makes it invalid: the fused conv weights (a graph that takes
the style's norms as inputs is shared by the styles and strengths that change only those), the
code that defines and exports the graph, precision, shape profile, library versions and the GPU;
a change to any of them is a different file, so a stale one is never picked up. Each file ends
with the SHA-256 of its contents, and a file that fails that check or fails to load is deleted and
rebuilt, so a corrupt one is never used either.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from ..errors import InputError
from ..io.files import usual_permissions

log = logging.getLogger(__name__)
T = TypeVar("T")
DIGEST_BYTES = 32
DEFAULT_LIMIT_MB = 2048


def cache_limit_bytes() -> int:
    """$RTSTYLE_ENGINE_CACHE_MB, else 2 GiB: the size the cache is pruned back to after each write."""
    value = os.environ.get("RTSTYLE_ENGINE_CACHE_MB", str(DEFAULT_LIMIT_MB))
    try:
        return int(float(value) * 2**20)
    except ValueError:
        raise InputError(f"RTSTYLE_ENGINE_CACHE_MB must be a number of megabytes, got {value!r}") from None


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
        usual_permissions(Path(tmp))  # mkstemp's 0600 would keep the cache from other users' workers
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def seal(data: bytes) -> bytes:
    return data + hashlib.sha256(data).digest()


def unseal(sealed: bytes) -> bytes:
    """The payload of a sealed file; ValueError when the file does not match its checksum."""
    data, digest = sealed[:-DIGEST_BYTES], sealed[-DIGEST_BYTES:]
    if len(sealed) <= DIGEST_BYTES or hashlib.sha256(data).digest() != digest:
        raise ValueError("checksum mismatch")
    return data


def read_cached(path: Path) -> bytes:
    """A cached file's payload without its checksum (for copying an engine out of the cache)."""
    return unseal(path.read_bytes())


def load_or_build(path: Path, load: Callable[[bytes], T], build: Callable[[], bytes], what: str) -> T:
    """`load` the payload cached at `path`, or `build` it, cache it and load that.

    A cached file that fails its checksum or makes `load` raise is deleted and rebuilt, with a
    warning. Errors from building, or from loading what was just built, reach the caller.
    """
    if path.exists():
        try:
            loaded = load(unseal(path.read_bytes()))
        except Exception as exc:  # whatever the loader raises on a bad file
            log.warning("cached %s %s is unusable (%s); rebuilding it", what, path.name, exc)
            path.unlink(missing_ok=True)
        else:
            with contextlib.suppress(OSError):  # a read-only cache still serves; it just is not pruned by use
                path.touch()  # pruning goes by last use
            return loaded
    data = build()
    loaded = load(data)  # before caching: what cannot load is never cached
    write_atomic(path, seal(data))
    prune(path.parent, cache_limit_bytes(), keep=path)
    return loaded


def prune(folder: Path, limit_bytes: int, keep: Path | None = None) -> list[Path]:
    """Delete the least recently used cached files until the folder holds at most `limit_bytes`.

    An engine file is keyed by its fused conv weights (the norms are inputs), so every LoRA adapter and
    strength of one makes its own, and trying many would otherwise grow the cache without end. `keep`
    (the file just written) always stays.
    """
    files = sorted(((path.stat(), path) for path in list_cached(folder)), key=lambda entry: entry[0].st_mtime)
    total = sum(stat.st_size for stat, _ in files)
    removed = []
    for stat, path in files:
        if total <= limit_bytes:
            break
        if path == keep:
            continue
        total -= stat.st_size
        path.unlink(missing_ok=True)
        removed.append(path)
    if removed:
        log.info("engine cache over %.0f MB: removed %d least recently used file(s)", limit_bytes / 2**20, len(removed))
    return removed


def list_cached(folder: Path | None = None) -> list[Path]:
    folder = folder or default_cache_dir()
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".") and p.name != "README.md")
