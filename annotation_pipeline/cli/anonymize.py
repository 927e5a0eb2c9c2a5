"""``annotation-pipeline anonymize IMAGE... --output DIR``: what would leave for the vendor."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from annotation_pipeline.cli.common import CliError, emit

HELP = """\
The same image path as the anonymized_items asset (anonymize_image with the default
ImageSettings), outside Dagster and without a data root: decode safely, apply the EXIF
orientation, find faces (CenterFace) and plates, obscure them, re-encode from bare pixels
(JPEG uploads leave as JPEG, everything else as lossless PNG; no metadata survives). Each
output keeps its input's stem: DIR/<stem>.jpg or DIR/<stem>.png, written atomically.

Every good image is written even when others are bad; each bad one gets a one-line error on
stderr and the command exits 1. --json prints each file's redactions (boxes in pixels of
the upright image, detector, version and threshold).
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "anonymize", help="obscure faces and plates and strip metadata from images, as shipped to vendors",
        description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("images", nargs="+", type=Path, metavar="IMAGE", help="JPEG, PNG, WebP, BMP or TIFF files")
    parser.add_argument("--output", "-o", type=Path, required=True, metavar="DIR",
                        help="folder for the anonymized images (created if missing)")
    parser.add_argument("--json", action="store_true", help="each file's redactions as JSON")
    parser.set_defaults(func=run_anonymize)


def _plan(images: list[Path], output: Path) -> tuple[dict[Path, Path], list[str]]:
    """Input -> output folder entry per image; problems for inputs that cannot be planned."""
    problems: list[str] = []
    by_stem: dict[str, Path] = {}
    planned: dict[Path, Path] = {}
    for image in images:
        if not image.exists():
            problems.append(f"{image}: no such file")
        elif image.is_dir():
            problems.append(f"{image}: is a folder; pass the image files (e.g. {image}/*.jpg)")
        elif image.stem in by_stem:
            problems.append(f"{image}: same stem as {by_stem[image.stem]}; both would be written as "
                            f"{output / image.stem}.*; rename one or run them separately")
        else:
            by_stem[image.stem] = image
            planned[image] = output
    return planned, problems


def _anonymize_one(image: Path, output: Path) -> dict[str, Any] | str:
    from annotation_pipeline.anonymization.image import ImageProblem, anonymize_image

    try:
        data = image.read_bytes()
    except OSError as exc:
        return f"{image}: cannot be read ({exc.strerror})"
    result = anonymize_image(data, str(image))
    if isinstance(result, ImageProblem):
        return f"{result.detail} [{result.reason}]"
    target = output / f"{image.stem}{result.suffix}"
    if target.resolve() == image.resolve():
        return f"{image}: the output would overwrite the input; choose another --output folder"
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_bytes(result.data)
    os.replace(tmp, target)  # never a half-written image where a reviewer looks
    return {
        "input": str(image), "output": str(target), "width": result.width, "height": result.height,
        "redactions": [{"kind": r.kind, "count": r.count, "box": list(r.box) if r.box else None,
                        "action": r.action, "detector": r.detector, "detector_version": r.detector_version}
                       for r in result.redactions],
    }


def run_anonymize(args: argparse.Namespace) -> int:
    output: Path = args.output
    if output.exists() and not output.is_dir():
        raise CliError(f"{output}: --output must be a folder, and this is a file")
    planned, problems = _plan(list(args.images), output)
    files: list[dict[str, Any]] = []
    if planned:
        output.mkdir(parents=True, exist_ok=True)
    for image in planned:
        outcome = _anonymize_one(image, output)
        if isinstance(outcome, str):
            problems.append(outcome)
        else:
            files.append(outcome)
    emit({"output": str(output), "files": files, "errors": problems}, args.json, _render)
    if problems:
        raise CliError(*problems)
    return 0


def _render(result: dict[str, Any]) -> str:
    lines = []
    for f in result["files"]:
        counts: dict[str, int] = {}
        for r in f["redactions"]:
            counts[r["kind"]] = counts.get(r["kind"], 0) + r["count"]
        found = ", ".join(f"{kind} {n}" for kind, n in sorted(counts.items())) or "nothing to redact"
        lines.append(f"{f['input']} -> {f['output']} ({f['width']}x{f['height']}): {found}")
    lines.append(f"{len(result['files'])} written to {result['output']}, {len(result['errors'])} refused")
    return "\n".join(lines)
