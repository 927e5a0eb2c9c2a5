import json

import pandas as pd

from annotation_pipeline.contracts import ANONYMIZED_ITEMS, VENDOR_TASKS
from annotation_pipeline.ontology import load_guidelines, load_ontology
from annotation_pipeline.prelabel.model import load_rgb
from annotation_pipeline.sample_world.workforce import AnnotatorProfile, simulate_answers, write_label_studio_exports
from annotation_pipeline.vendor.handoff import build_vendor_batch, verify_manifest


def _batch(gold_root, trained_model, tmp_path, n_gold=3):
    gold_labels = pd.read_parquet(gold_root / "gold" / "gold_labels.parquet")
    paths = sorted((gold_root / "gold" / "images").glob("*.png"))
    items = ANONYMIZED_ITEMS.conform(pd.DataFrame({
        "item_id": [p.stem for p in paths[:6]], "partition_date": "2026-11-21",
        "image_path": [str(p.relative_to(gold_root)) for p in paths[:6]], "width": 320, "height": 240,
        "metadata_json": "{}", "caption": None, "n_redactions": 0}))
    # the day's items and the gold images alike get pre-labels (gold's are held-out ones in the pipeline)
    pre = trained_model.predict({p.stem: load_rgb(p) for p in paths[:20]})
    queue = pd.DataFrame({"item_id": items["item_id"]})
    gold = pd.DataFrame({"item_id": [p.stem for p in paths[10:20]], "image_path": [str(p) for p in paths[10:20]],
                         "width": 320, "height": 240})
    batch = build_vendor_batch(queue, items, pre, gold, gold_root, tmp_path / "staging", vendor="acme",
                               partition_date="2026-11-21", overlap=3, n_gold=n_gold, ontology=load_ontology(),
                               guidelines=load_guidelines())
    return batch, gold_labels


def test_a_batch_carries_prelabels_checksums_and_hidden_gold(gold_root, trained_model, tmp_path):
    batch, _ = _batch(gold_root, trained_model, tmp_path)
    VENDOR_TASKS.validate(batch.tasks)
    assert len(batch.tasks) == 9 and batch.tasks["is_gold"].sum() == 3
    assert (batch.tasks["overlap"] == 3).all()
    tasks = json.loads((batch.folder / "tasks.json").read_text())
    manifest = json.loads((batch.folder / "manifest.json").read_text())
    assert manifest["overlap"] == 3 and manifest["guidelines_version"] == load_guidelines().version
    assert verify_manifest(batch.folder) == []
    with_predictions = [t for t in tasks if t.get("predictions")]
    assert len(with_predictions) == 9  # gold tasks too: a task without a pre-label would give gold away
    assert all(r["type"] in ("choices", "rectanglelabels") for t in with_predictions for r in t["predictions"][0]["result"])
    # Nothing the vendor gets says which task is gold or which item it is.
    vendor_bytes = b"".join(p.read_bytes() for p in batch.folder.rglob("*.json"))
    assert b"is_gold" not in vendor_bytes and b"gold" not in vendor_bytes
    # (Gold item ids are hashes of the gold image bytes, which the manifest's checksums repeat
    # by construction; the task file itself names no item.)
    task_bytes = (batch.folder / "tasks.json").read_bytes()
    assert b"item_id" not in vendor_bytes
    assert not any(i.encode() in task_bytes for i in batch.tasks["item_id"])
    (batch.folder / "images" / batch.tasks["image_file"].iloc[0]).write_bytes(b"swapped")
    assert verify_manifest(batch.folder) == [f"images/{batch.tasks['image_file'].iloc[0]}: sha256 differs from the manifest"]


def test_the_same_selection_is_the_same_batch(gold_root, trained_model, tmp_path):
    first, _ = _batch(gold_root, trained_model, tmp_path / "a")
    second, _ = _batch(gold_root, trained_model, tmp_path / "b")
    assert first.batch_id == second.batch_id
    pd.testing.assert_frame_equal(first.tasks, second.tasks)


def test_the_simulated_workforce_answers_every_task_k_times_with_profile_quality(gold_root, trained_model, tmp_path):
    batch, gold_labels = _batch(gold_root, trained_model, tmp_path, n_gold=0)
    truth = gold_labels.merge(batch.tasks[["item_id", "image_file"]], on="item_id")
    profiles = [AnnotatorProfile("good", 1.0, 0.0, 0.0, 10), AnnotatorProfile("ok", 0.9, 2, 0.1, 10),
                AnnotatorProfile("spam", 0.25, 20, 0.5, 2, spammer=True)]
    answers = simulate_answers(batch.tasks, truth, profiles, 3, ["day", "night", "fog", "rain"],
                               load_ontology().object_geometry, seed=1)
    choices = answers[answers["kind"] == "choice"]
    assert (choices.groupby("task_id")["ann"].nunique() == 3).all()
    right = truth[truth["kind"] == "choice"].set_index("image_file")["label"]
    good = choices[choices["ann"] == 0].merge(batch.tasks[["task_id", "image_file"]], on="task_id")
    assert (good["label"].to_numpy() == right.loc[good["image_file"]].to_numpy()).all()
    files = write_label_studio_exports(answers, batch.tasks, profiles, tmp_path / "inbox", "acme")
    assert sorted(f.name for f in files) == ["good.json", "ok.json", "spam.json"]
    export = json.loads(files[0].read_text())
    assert {t["annotations"][0]["completed_by"]["email"] for t in export} == {"good@acme.example"}
