"""Small facts about files that several writers need: is it the same file, and the usual permissions."""

from __future__ import annotations

import os
from pathlib import Path


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
