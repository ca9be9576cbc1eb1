"""The ``napari-sam-peft`` command line: the scriptable face of ``napari_sam_peft.core``.

Exit status: 0 on success, 2 on bad input (one line on stderr saying what to do),
1 on any other failure.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from napari_sam_peft import __version__
from napari_sam_peft.cli import cluster, demo, evaluate, export, methods, store, train
from napari_sam_peft.core.errors import SamPeftError

COMMANDS = (methods, store, train, evaluate, export, demo, cluster)

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_BAD_INPUT = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="napari-sam-peft",
        description="Annotate with Segment Anything and finetune it with PEFT, in napari or from scripts.",
    )
    parser.add_argument("--version", action="version", version=f"napari-sam-peft {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:  # each module: NAME, HELP, DESCRIPTION, add_arguments and run (or subcommands)
        command_parser = subparsers.add_parser(command.NAME, help=command.HELP, description=command.DESCRIPTION)
        command.add_arguments(command_parser)
        if hasattr(command, "run"):
            command_parser.set_defaults(run=command.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or EXIT_OK)
    except SamPeftError as err:
        print(f"napari-sam-peft {args.command}: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(f"napari-sam-peft {args.command}: interrupted", file=sys.stderr)
        return EXIT_FAILURE
