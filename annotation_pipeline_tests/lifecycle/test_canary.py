"""The privacy canary: personal values planted everywhere an upload can carry them never leave the restricted store.

Planted in landing files (their names, sidecars, captions, EXIF, PNG text chunks) and in the
gold images (EXIF, PNG text chunks), then the whole lifecycle runs through the `demo` command
(Dagster, SQLite storage under the data root). The outbox, the release folders, the DVC
remote and every file of the Dagster storage are scanned byte for byte: no planted value and
no original file name may be found. A positive control scans the restricted store, where they
must be found (so the scan itself works).
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image, PngImagePlugin

from annotation_pipeline.contracts import GOLD_LABELS, item_id_for_bytes
from annotation_pipeline.layout import DataLayout
from annotation_pipeline.sample_world.sample_data import generate_gold_set, render_scene

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("canary")]  # one worker runs the canary demo once
DATE = "2026-11-18"
SECRET = "canary-secret-9d2e4f6a8b0c1e3f5a7b9c1d3e5f7a9b"

EMAIL = "jane.canary@example.org"
NAME = "Quentin Canaryfield"
IBAN_LOWER = "gb82 west 1234 5698 7654 32"     # valid (python-stdnum agrees), written in lower case
PHONE = "+49 30 5550199"
PLAIN_NAME = "canary_upload_zx81.png"          # a file name holding nothing but itself

PLANTED = {
    "email": [EMAIL, "jane.canary"],
    "name": [NAME, "Canaryfield", "Quentin"],
    "iban": [IBAN_LOWER, IBAN_LOWER.replace(" ", "")],
    "phone": [PHONE, "5550199"],
    "file name": [f"{EMAIL}.png", "Canaryfield portrait", "canary_upload_zx81"],
}


def _text_chunks() -> PngImagePlugin.PngInfo:
    info = PngImagePlugin.PngInfo()
    info.add_text("Author", NAME)
    info.add_text("Comment", f"mail {EMAIL}, iban {IBAN_LOWER}, phone {PHONE}")
    info.add_itxt("Description", f"{NAME} <{EMAIL}>")
    return info


def _exif() -> Image.Exif:
    exif = Image.Exif()
    exif[0x013B] = NAME                                   # Artist
    exif[0x8298] = EMAIL                                  # Copyright
    exif[0x010E] = f"iban {IBAN_LOWER} phone {PHONE}"     # ImageDescription
    return exif


def _planted_png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG", pnginfo=_text_chunks(), exif=_exif())
    return buf.getvalue()


def _planted_jpeg(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=92, exif=_exif())
    return buf.getvalue()


def _sidecar(notes: str) -> str:
    return json.dumps({
        "capture": {"camera": f"phone of {EMAIL}", "timestamp": f"{DATE}T09:00:00Z"},
        "operator": {"name": NAME, "email": EMAIL, "phone": PHONE},
        "customer": {"iban": IBAN_LOWER},
        "notes": notes,
        "free_form": {"contact": f"{NAME}, {PHONE}, {IBAN_LOWER}"},
    })


def _truth_rows(item_id: str, truth) -> list[dict]:
    rows = [{"item_id": item_id, "kind": "choice", "label": truth.scene, "x_min": np.nan, "y_min": np.nan,
             "x_max": np.nan, "y_max": np.nan, "geometry_wkb": None}]
    rows += [{"item_id": item_id, "kind": "polygon" if wkb is not None else "box", "label": label,
              "x_min": box[0], "y_min": box[1], "x_max": box[2], "y_max": box[3], "geometry_wkb": wkb}
             for label, box, wkb in truth.objects]
    return rows


def _plant(root: Path) -> list[str]:
    """Planted landing files and gold images; returns the planted items' ids."""
    layout = DataLayout(root)
    generate_gold_set(root)
    for path in sorted(layout.gold_images.glob("*.png")):  # same pixels, personal data in the chunks
        path.write_bytes(_planted_png(Image.open(path).convert("RGB")))
    landing = layout.landing(DATE)
    landing.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(11)
    notes = [f"recorded by {NAME}; iban {IBAN_LOWER}; call {PHONE}; mail {EMAIL}",
             f"Photographer {NAME} ({EMAIL}) asked to call {PHONE}",
             f"{NAME} uploaded this; refund to {IBAN_LOWER}"]
    names = [f"{EMAIL}.png", f"{NAME} portrait.jpg", PLAIN_NAME]
    truth_rows, ids = [], []
    for name, note in zip(names, notes):
        image, truth = render_scene(rng, (320, 240))
        content = _planted_jpeg(image) if name.endswith(".jpg") else _planted_png(image)
        (landing / name).write_bytes(content)
        (landing / f"{name}.json").write_text(_sidecar(note))
        ids.append(item_id_for_bytes(content))
        truth_rows += _truth_rows(ids[-1], truth)
    layout.sample_truth.mkdir(parents=True, exist_ok=True)  # the simulated vendor's eyes
    GOLD_LABELS.conform(pd.DataFrame(truth_rows)).to_parquet(layout.sample_truth / "truth-canary.parquet")
    return ids


@pytest.fixture(scope="module")
def canary_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("canary")
    planted_ids = _plant(root)
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}
    env["ANNOTATION_PIPELINE_PSEUDONYM_SECRET"] = SECRET
    proc = subprocess.run([sys.executable, "-m", "annotation_pipeline.cli", "demo", "--root", str(root),
                           "--images", "8", "--date", DATE, "--json"],
                          capture_output=True, text=True, timeout=900, env=env, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root, planted_ids, json.loads(proc.stdout)


def _files(*folders: Path) -> list[Path]:
    return [p for folder in folders if folder.exists() for p in sorted(folder.rglob("*")) if p.is_file()]


def _readable(path: Path) -> bytes:
    """The file's bytes, and for Parquet (compressed pages) its decoded rows as well."""
    content = path.read_bytes()
    if content[:4] == b"PAR1":  # releases and DVC remote objects: scan the values, not only the pages
        content += pd.read_parquet(path).to_csv(index=False).encode("utf-8", "replace")
    return content


def _found(paths: list[Path]) -> list[tuple[str, str, str]]:
    hits = []
    for path in paths:
        content = _readable(path).lower()
        for kind, values in PLANTED.items():
            hits += [(kind, value, str(path)) for value in values if value.lower().encode() in content]
    return hits


def test_the_planted_items_and_gold_tasks_reached_the_vendor(canary_run) -> None:
    root, planted_ids, summary = canary_run
    assert summary["success"]
    tasks = pd.concat([pd.read_parquet(p) for p in DataLayout(root).handoff.glob("*/tasks.parquet")])
    assert set(planted_ids) <= set(tasks["item_id"])  # the canaries were shipped, so the scan means something
    assert tasks["is_gold"].any()


def test_no_planted_value_or_original_name_reaches_outbox_releases_dvc_or_dagster(canary_run) -> None:
    root, _, _ = canary_run
    layout = DataLayout(root)
    scanned = _files(layout.vendors, layout.releases, layout.local_dvc_remote, layout.dagster_home)
    assert any(p.suffix == ".db" for p in scanned)            # Dagster's SQLite storage is among them
    assert any("outbox" in p.parts for p in scanned) and any(p.suffix == ".dvc" for p in scanned)
    assert _found(scanned) == []


def test_shipped_gold_images_are_re_encoded_without_their_text_chunks(canary_run) -> None:
    root, _, _ = canary_run
    outbox_images = [p for p in _files(DataLayout(root).vendors) if p.parent.name == "images"]
    assert outbox_images
    for path in outbox_images:
        with Image.open(path) as image:
            assert not {"Author", "Comment", "Description", "exif"} & set(image.info), path.name


def test_the_restricted_store_keeps_the_way_back(canary_run) -> None:
    """Positive control: the scan finds the planted values where they belong, and an auditor can map back."""
    root, planted_ids, _ = canary_run
    layout = DataLayout(root)
    assert {kind for kind, _, _ in _found(_files(layout.restricted))} == set(PLANTED)
    originals = pd.read_parquet(layout.landing_originals(DATE))
    assert {f"{EMAIL}.png", f"{NAME} portrait.jpg", PLAIN_NAME} <= set(originals["source_file"])
    assert set(planted_ids) <= set(originals.loc[originals["outcome"] == "accepted", "item_id"])
    assert (os.stat(layout.landing_originals(DATE)).st_mode & 0o077) == 0
