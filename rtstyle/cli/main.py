"""Command line: argument parsing and error reporting. Each command is a module of its own (add_parser, run).

Every error a user can cause ends as one line on stderr and exit code 2; a failure while running
(a stage's error, memory running out) is one line and exit code 1; Ctrl-C during a conversion keeps
what was written and exits 130.
"""

from __future__ import annotations

import io
import json
import logging
import os
import sys

from .. import __version__
from ..errors import PipelineError, RtstyleError
from . import cameras, demo, export, info, serve, style_from_image, styles, stylize, train, webcam
from .common import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_USAGE, Parser

#: The commands in the order `rtstyle --help` lists them, each a module with add_parser(sub) and run(args).
COMMANDS = {"stylize": stylize, "styles": styles, "demo": demo, "webcam": webcam, "train": train,
            "style-from-image": style_from_image, "cameras": cameras, "info": info, "export": export,
            "serve": serve}


def build_parser() -> Parser:
    parser = Parser(prog="rtstyle", description="Real-time style transfer for video files, images and webcams.")
    parser.add_argument("--version", action="version", version=f"rtstyle {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what happens")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for command in COMMANDS.values():
        command.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version and usage errors
        return int(exc.code or 0)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    logging.basicConfig(level=logging.INFO if args.verbose or args.debug else logging.WARNING,
                        format="rtstyle: %(levelname)s: %(message)s")
    try:
        return COMMANDS[args.command].run(args)
    except PipelineError as exc:  # a stage failed while running: not a usage error, so not its exit code
        if args.debug:
            raise
        print(f"rtstyle: error: {exc}{_memory_hint(exc)}", file=sys.stderr)
        return _json_error(args, exc, EXIT_FAILURE)
    except RtstyleError as exc:
        if args.debug:
            raise
        print(f"rtstyle: error: {exc}", file=sys.stderr)
        return _json_error(args, exc, EXIT_USAGE)
    except KeyboardInterrupt:
        print("rtstyle: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # the reader left early (`rtstyle styles | head`): not an error of ours
        _silence_stdout()
        return EXIT_FAILURE
    except Exception as exc:
        if args.debug:
            raise
        what = "error" if _out_of_memory(exc) else "internal error"
        print(f"rtstyle: {what}: {exc.__class__.__name__}: {exc}{_memory_hint(exc)} (rerun with --debug for details)",
              file=sys.stderr)
        return EXIT_FAILURE


def _json_error(args, exc: BaseException, code: int) -> int:
    """With --json, stdout gets JSON whatever happened: a script reading it sees the error, not nothing."""
    if getattr(args, "json", False):
        print(json.dumps({"error": str(exc), "exit_code": code}))
    return code


def _out_of_memory(exc: BaseException | None) -> bool:
    """Whether `exc` or what caused it is the host or the GPU running out of memory (torch's CUDA OOM included)."""
    while exc is not None:
        if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
            return True
        exc = exc.__cause__
    return False


def _memory_hint(exc: BaseException) -> str:
    return "; out of memory: a smaller --batch or --max-side needs less" if _out_of_memory(exc) else ""


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so that the flush at exit does not hit the closed pipe again."""
    try:
        target = sys.stdout.fileno()
    except (ValueError, io.UnsupportedOperation):  # a stdout without a file descriptor (a test's)
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, target)
    finally:
        os.close(devnull)


if __name__ == "__main__":
    sys.exit(main())
