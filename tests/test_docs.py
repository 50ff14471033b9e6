"""Every `rtstyle ...` command line in the README and docs/ goes through the real argument parser, so a
renamed or removed flag fails here rather than in a reader's terminal."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from rtstyle.cli.main import build_parser

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def command_lines(page: Path) -> list[tuple[str, bool]]:
    """(command, whole) for the `rtstyle ...` lines of the page's code blocks (whole commands), and for
    inline code that starts with `rtstyle ` (often a command named in passing, without its required
    arguments); a trailing shell comment is dropped, and lines that end in a backslash are joined."""
    found, fence, text = [], False, page.read_text()
    joined = re.sub(r"\\\n\s*", " ", text)
    for line in joined.splitlines():
        if line.lstrip().startswith("```"):
            fence = not fence
            continue
        if fence:
            command = line.strip()
            command = re.sub(r"^(\$ |\.venv/bin/)", "", command)
            if command.startswith("rtstyle "):
                found.append((command, True))
        else:
            found += [(span, False) for span in re.findall(r"`(rtstyle [^`]+)`", line)]
    return [(_without_comment(command), whole) for command, whole in found]


def _without_comment(command: str) -> str:
    words = shlex.split(command, comments=True)
    return shlex.join(words)


def _cases() -> list:
    return [pytest.param(page, command, whole, id=f"{page.name}:{command[:60]}")
            for page in PAGES for command, whole in command_lines(page)]


def test_the_pages_show_commands():
    assert len(_cases()) >= 20 and {case.values[0].name for case in _cases()} >= {"README.md", "video.md"}


def _subcommand(name: str):
    parser = build_parser()
    return next(action for action in parser._subparsers._group_actions if action.choices).choices[name]


@pytest.mark.parametrize(("page", "command", "whole"), _cases())
def test_each_command_parses(page, command, whole, capsys):
    """A code block's line parses whole; inline code names a command in passing, often with placeholders
    (`--temporal-weight W`) and without its required arguments, so there each flag must exist."""
    argv = shlex.split(command)[1:]
    if not whole:
        if argv[0].isupper():
            return  # `rtstyle COMMAND --help`: any command
        known = _subcommand(argv[0])._option_string_actions if not argv[0].startswith("-") else {"--version": 1}
        flags = [word.split("=")[0] for word in argv[1:] if word.startswith("-")]
        unknown = [flag for flag in flags if flag not in known]
        assert not unknown, f"{page.name}: `{command}` names flags {argv[0]} does not have: {unknown}"
        return
    if argv[-1:] == ["--help"] or argv in (["--version"],):
        return  # these exit 0 by design
    try:
        build_parser().parse_args(argv)
    except SystemExit as exc:
        error = capsys.readouterr().err.strip()
        pytest.fail(f"{page.name}: `{command}` does not parse: {error} (exit {exc.code})")
