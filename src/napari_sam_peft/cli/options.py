"""Options several commands share."""

from __future__ import annotations

import argparse


def add_model_options(
    parser: argparse.ArgumentParser, model_help: str, device: str, required: bool = True
) -> None:
    """``--model`` (required unless said otherwise) and ``--device``, as every command that loads a model
    takes them."""
    parser.add_argument("--model", required=required, metavar="NAME|FILE", help=model_help)
    parser.add_argument("--device", default=device, help=f"cpu, cuda, mps or auto (default {device})")
