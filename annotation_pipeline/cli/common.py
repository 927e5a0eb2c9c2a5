"""What every command shares: the bad-input error, the ``--root`` option and output printing."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from annotation_pipeline.layout import DataLayout
from annotation_pipeline.settings import Settings, SettingsError, load_settings


class CliError(Exception):
    """Bad input: each problem is printed as one line on stderr and the command exits 1."""

    def __init__(self, *problems: str):
        super().__init__("; ".join(problems))
        self.problems = list(problems)


def add_root_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", type=Path, default=None,
                        help="data root (default: $ANNOTATION_PIPELINE_ROOT, else ./data/runtime)")


def emit(result: dict[str, Any], as_json: bool, human: Callable[[dict[str, Any]], str]) -> None:
    """Print a command's result: JSON for machines, the ``human`` rendering otherwise."""
    if as_json:
        print(json.dumps(result, indent=2, default=str))
    else:
        print(human(result))


def settings_for(args: argparse.Namespace) -> Settings:
    """The settings, with ``--root`` (when the command has it) over ``$ANNOTATION_PIPELINE_ROOT``."""
    try:
        return load_settings(root=getattr(args, "root", None))
    except SettingsError as exc:
        raise CliError(str(exc)) from None


def layout_for(args: argparse.Namespace) -> DataLayout:
    return DataLayout(settings_for(args).data_root)
