"""Small facts about files that several writers need: can it be written, is it the same file, and the usual
permissions."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ..errors import OutputError


def same_file(a: Path, b: Path) -> bool:
    """Whether `a` and `b` are one file (device and inode): a hard link, a bind mount or a symlink of it counts,
    which comparing resolved paths misses. False when either does not exist."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return Path(a).resolve() == Path(b).resolve()  # one not there yet: the same only by name


def umask() -> int:
    """This process's umask, read without changing it where Linux tells (/proc), else set and put back."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def usual_permissions(path: Path) -> None:
    """Give `path` the mode a newly created file gets (0666 less the umask: 0644 with umask 022).

    For files written through a private temporary file (`mkstemp`, safetensors) that are left 0600,
    which other users, their Ray workers among them, cannot read.
    """
    os.chmod(path, 0o666 & ~umask())


def check_writable(path: Path) -> None:
    """Fail before any work if `path` cannot be created: try to create a file beside it."""
    if path.is_dir():
        raise OutputError(f"output is a directory: {path}")
    parent = path.parent
    if not parent.is_dir():
        raise OutputError(f"output folder does not exist: {parent}")
    try:  # a unique name: several processes (torchrun) may check the same output at once
        with tempfile.NamedTemporaryFile(dir=parent, prefix=f".{path.name}.", suffix=".rtstyle-probe"):
            pass
    except OSError as exc:
        raise OutputError(f"cannot write to {parent}: {exc.strerror or exc}") from None
