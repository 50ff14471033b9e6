"""The -y / -n rule for every file a command writes (stylize's outputs, recordings, style files, training runs).

An existing file is replaced with -y, left alone with -n (the command does nothing and exits 0),
and otherwise asked about on a terminal and refused anywhere else (scripts, pipes, CI), as ffmpeg does.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ..errors import OutputError


def add_overwrite_options(parser) -> None:
    existing = parser.add_mutually_exclusive_group()
    existing.add_argument("-y", "--overwrite", action="store_true", help="replace an existing output")
    existing.add_argument("-n", "--no-overwrite", action="store_true",
                          help="leave an existing output alone and do nothing (exit 0); without -y or -n, a "
                               "terminal asks and anything else is refused")


def may_write(path: Path, overwrite: bool, keep: bool, what: str = "", replace: str = "-y replaces it") -> bool:
    """True: go on and write `path`. False: it exists and -n keeps it (said on stderr). Refused: OutputError.

    `what` names the file where its name alone does not say what it is ("a checkpoint to --resume").
    """
    if not path.exists() or overwrite:
        return True
    named = f"{path}{f' ({what})' if what else ''}"
    if keep:
        print(f"rtstyle: {named} exists; left as it is (-n)", file=sys.stderr)
        return False
    if not confirm_overwrite(path):
        raise OutputError(f"{named} exists; {replace}, -n leaves it")
    return True


def confirm_overwrite(dst: Path) -> bool:
    """ffmpeg's habit: ask on a terminal, refuse anywhere else (scripts, pipes, CI)."""
    if not (sys.stdin.isatty() and sys.stderr.isatty()):
        return False
    try:
        answer = input(f"{dst} exists. Overwrite? [y/N] ")
    except EOFError:
        return False
    return answer.strip().lower() in ("y", "yes")
