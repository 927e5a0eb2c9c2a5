"""Vendor handoff: a batch folder the vendor can import, and our private record of it.

A batch is a folder of anonymized images, a Label Studio import file (``tasks.json``) that
carries our pre-labels as predictions, and a ``manifest.json`` with a sha256 per file, the
overlap k, and the ontology and guideline versions. Hidden gold tasks are mixed in and look
exactly like the others: which tasks are gold, and which item each task is, stays on our side
in the VENDOR_TASKS table. Only anonymized images ever enter a batch folder.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from annotation_pipeline.anonymization.image import ImageProblem, anonymize_image
from annotation_pipeline.atomic_files import write_bytes_atomic, write_parquet_atomic
from annotation_pipeline.contracts import VENDOR_TASKS
from annotation_pipeline.layout import BatchFolder, DataLayout
from annotation_pipeline.ontology import Guidelines, Ontology
from annotation_pipeline.vendor.label_studio_format import label_studio_results


@dataclass
class VendorBatch:
    batch_id: str
    folder: Path             # the folder to deliver (tasks.json, manifest.json, images/)
    tasks: pd.DataFrame      # VENDOR_TASKS: our private record


def batch_id_for(vendor: str, partition_date: str, item_ids: list[str]) -> str:
    """Deterministic: the same selection for the same day is the same batch (idempotent reruns)."""
    digest = hashlib.sha256(("\n".join(sorted(item_ids))).encode()).hexdigest()[:8]
    return f"{vendor}-{partition_date}-{digest}"


def _sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _copy_image_for_vendor(source: Path, is_gold: bool, target: Path) -> None:
    """Queued items come from anonymized_items already; gold images get the same anonymization
    and re-encoding here (a PNG text chunk or EXIF field of a gold file must not reach a vendor)."""
    if not is_gold:
        shutil.copyfile(source, target)
        return
    result = anonymize_image(Path(source).read_bytes(), f"gold image {Path(source).name}")
    if isinstance(result, ImageProblem):
        raise ValueError(f"{result.detail} ({result.reason}); fix or remove this gold image")
    target.write_bytes(result.data)


def _ls_prediction_results(pre: pd.DataFrame, width: float, height: float, ontology: Ontology) -> list[dict]:
    """Pre-labels as Label Studio prediction results (percent coordinates).

    Polygon classes get no suggestion: the model proposes boxes, and the guideline asks for an outline.
    """
    suggested = pre[(pre["kind"] == "choice") | pre["label"].map(ontology.object_geometry).eq("box")]
    return label_studio_results(suggested, width, height, ontology, scores=suggested["score"].tolist())


def build_vendor_batch(queue: pd.DataFrame, items: pd.DataFrame, prelabels: pd.DataFrame,
                       gold_items: pd.DataFrame, root: Path, staging_dir: Path, *, vendor: str,
                       partition_date: str, overlap: int, n_gold: int, ontology: Ontology,
                       guidelines: Guidelines, seed: int = 0) -> VendorBatch:
    """Write a batch folder for the queued items plus ``n_gold`` hidden gold tasks.

    ``items`` is ANONYMIZED_ITEMS (image_path relative to ``root``); ``gold_items`` has
    item_id, image_path (absolute), width, height. Task order is shuffled so gold tasks sit at
    no fixed position.
    """
    if overlap < 1:
        raise ValueError(f"overlap must be at least 1, got {overlap}")
    queued = items.set_index("item_id").loc[queue["item_id"]]
    batch_id = batch_id_for(vendor, partition_date, list(queue["item_id"]))
    rng = np.random.default_rng([seed, int(partition_date.replace("-", ""))])
    gold_pick = gold_items.iloc[rng.choice(len(gold_items), size=min(n_gold, len(gold_items)), replace=False)] \
        if n_gold and len(gold_items) else gold_items.iloc[:0]
    entries = pd.concat([
        pd.DataFrame({"item_id": queued.index, "source": [root / p for p in queued["image_path"]],
                      "width": queued["width"].to_numpy(float), "height": queued["height"].to_numpy(float),
                      "is_gold": False}),
        pd.DataFrame({"item_id": gold_pick["item_id"], "source": gold_pick["image_path"].map(Path),
                      "width": gold_pick["width"].to_numpy(float), "height": gold_pick["height"].to_numpy(float),
                      "is_gold": True}),
    ], ignore_index=True)
    entries = entries.iloc[rng.permutation(len(entries))].reset_index(drop=True)
    entries["task_id"] = (np.arange(len(entries)) + 1).astype(str)
    # Task ids repeat in every batch (1..n); the batch's digest in each image name is what lets
    # intake recognize another batch's export dropped into this batch's inbox (wrong_batch).
    entries["image_file"] = ("t" + entries["task_id"].str.zfill(5) + "-" + batch_id.rsplit("-", 1)[-1]
                             + entries["source"].map(lambda p: Path(p).suffix.lower() or ".png"))

    folder = staging_dir / batch_id
    if folder.exists():
        shutil.rmtree(folder)
    batch_folder = BatchFolder(folder)
    batch_folder.images.mkdir(parents=True)
    model_version = prelabels["model_version"].iloc[0] if len(prelabels) else "none"
    pre_by_item = {k: g for k, g in prelabels.groupby("item_id")}
    tasks_json = []
    for e in entries.itertuples(index=False):
        _copy_image_for_vendor(e.source, e.is_gold, batch_folder.images / e.image_file)
        task = {"id": int(e.task_id), "data": {"image": batch_folder.relative(batch_folder.images / e.image_file)}}
        # Gold tasks carry predictions when ``prelabels`` has them (held-out ones: defs.vendor
        # with_gold_prelabels), so a task without a pre-label does not give gold away.
        pre = pre_by_item.get(e.item_id)
        if pre is not None:
            task["predictions"] = [{"model_version": model_version,
                                    "score": float(pre["score"].mean()),
                                    "result": _ls_prediction_results(pre, e.width, e.height, ontology)}]
        tasks_json.append(task)
    batch_folder.tasks_file.write_text(json.dumps(tasks_json, indent=1))
    batch_folder.guidelines.write_text(guidelines.text)
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    manifest = {
        "batch_id": batch_id, "vendor": vendor, "created_for": partition_date,
        "n_tasks": len(entries), "overlap": overlap,
        "ontology": {"name": ontology.name, "version": ontology.version},
        "guidelines_version": guidelines.version, "model_version": model_version,
        "files": {str(p.relative_to(folder)): _sha256_file(p) for p in files},
    }
    batch_folder.manifest.write_text(json.dumps(manifest, indent=1, sort_keys=True))

    tasks = pd.DataFrame({
        "batch_id": batch_id, "task_id": entries["task_id"], "item_id": entries["item_id"],
        "is_gold": entries["is_gold"], "vendor": vendor, "image_file": entries["image_file"],
        "image_width": entries["width"], "image_height": entries["height"], "overlap": overlap,
        "ontology_version": ontology.version, "guidelines_version": guidelines.version,
        "model_version": model_version,
    })
    return VendorBatch(batch_id, folder, VENDOR_TASKS.conform(tasks))


def tasks_sent(layout: DataLayout, vendor: str, partition_date: str, exchange: str | None = None,
               holds=None) -> pd.DataFrame:
    """VENDOR_TASKS of every batch already delivered to ``vendor`` for a day (empty if none).

    With ``exchange``, only batches recorded as sent through that exchange count (a batch from
    before the record, or through another exchange, is not there); with ``holds``, only those the
    exchange says it still holds (a Label Studio project deleted or a server reset since)."""
    batches = sorted(p.name for p in layout.handoff.glob(f"{vendor}-{partition_date}-*"))
    batches = [b for b in batches if layout.handoff_tasks(b).is_file()]
    if exchange is not None:
        batches = [b for b in batches if _same_exchange(sent_through(layout, b), exchange)]
    if holds is not None:
        batches = [b for b in batches if holds(b)]
    if not batches:
        return VENDOR_TASKS.empty()
    return VENDOR_TASKS.conform(pd.concat([pd.read_parquet(layout.handoff_tasks(b)) for b in batches],
                                          ignore_index=True))


def _same_exchange(recorded: str | None, exchange: str) -> bool:
    """A batch recorded before the exchange was recorded went through the folder exchange (the embedded default)."""
    return recorded == exchange or (recorded is None and exchange.startswith("folder at "))


def sent_through(layout: DataLayout, batch_id: str, key: str = "exchange") -> str | None:
    """The exchange a batch was recorded as sent through, or (``key="location"``) where it went; None when not recorded."""
    path = layout.handoff_exchange(batch_id)
    return json.loads(path.read_text()).get(key) if path.is_file() else None


def supersede_returns(layout: DataLayout, vendor: str, batch_id: str, exchange: str) -> Path | None:
    """Before a recorded batch goes out through another ``exchange``: move the returns it got through
    the earlier one aside, so intake does not read the same tasks' answers twice (kept, not deleted)."""
    inbox = layout.inbox_batch(vendor, batch_id)
    if not layout.handoff_tasks(batch_id).is_file() or _same_exchange(sent_through(layout, batch_id), exchange) \
            or not inbox.is_dir():
        return None
    target = layout.superseded_returns(vendor, batch_id)
    if target.exists():
        shutil.rmtree(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(inbox), target)
    return target


def record_sent(layout: DataLayout, batch: VendorBatch, exchange: str = "", location: str = "") -> Path:
    """Remember a delivered batch and the exchange it went through (written only after delivery succeeded)."""
    write_bytes_atomic(layout.handoff_exchange(batch.batch_id),
                       json.dumps({"exchange": exchange, "location": location}, sort_keys=True).encode())
    return write_parquet_atomic(batch.tasks, layout.handoff_tasks(batch.batch_id))


def verify_manifest(folder: Path) -> list[str]:
    """Problems with a delivered batch folder (missing or altered files); empty when intact."""
    manifest = json.loads(BatchFolder(folder).manifest.read_text())
    problems = []
    for rel, digest in manifest["files"].items():
        path = folder / rel
        if not path.exists():
            problems.append(f"{rel}: listed in the manifest but missing")
        elif _sha256_file(path) != digest:
            problems.append(f"{rel}: sha256 differs from the manifest")
    return problems
