"""The pre-label model never runs code from the data root: skops with an allow-list, checked against
the sha256 the audit log recorded when it was saved."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import zipfile
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from annotation_pipeline.audit import append_audit_event, read_audit_events
from annotation_pipeline.defs.prelabel import prelabels
from annotation_pipeline.defs.resources import build_resources
from annotation_pipeline.layout import DataLayout
from annotation_pipeline.prelabel.model import MODEL_SAVED_EVENT, ModelIntegrityError, load_model, save_model
from annotation_pipeline.sample_world.sample_data import render_scene
from annotation_pipeline_tests.prelabel.day_items import DAY, anonymized_items_asset, save_day_scenes


class _Payload:
    """Unpickling this makes a folder: the stand-in for an attacker's code."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return os.mkdir, (self.marker,)


def _payload(marker: Path) -> bytes:
    return pickle.dumps(_Payload(marker))


@pytest.fixture
def root(tmp_path) -> Path:
    return save_day_scenes(tmp_path / "root", 3)


_anonymized_items = anonymized_items_asset(3)


def _prelabel_run(root: Path) -> dg.ExecuteInProcessResult:
    return dg.materialize([_anonymized_items, prelabels], partition_key=DAY, resources=build_resources("local", root),
                          raise_on_error=False)


def _failure(result: dg.ExecuteInProcessResult) -> str:
    return next(e.event_specific_data.error.message for e in result.all_events if e.is_step_failure)


def test_the_payload_is_live_so_the_tests_below_can_fail(tmp_path):
    pickle.loads(_payload(tmp_path / "ran"))
    assert (tmp_path / "ran").is_dir()


def test_the_model_is_stored_as_skops_with_its_sha256_in_the_card_and_the_audit_log(trained_model, root):
    sha256 = save_model(trained_model, root)
    layout = DataLayout(root)
    assert zipfile.is_zipfile(layout.prelabel_model)  # skops: a zip of JSON schema + npy arrays, not a pickle
    assert hashlib.sha256(layout.prelabel_model.read_bytes()).hexdigest() == sha256
    assert json.loads(layout.prelabel_model_card.read_text())["sha256"] == sha256
    assert [e["sha256"] for e in read_audit_events(root) if e["event"] == MODEL_SAVED_EVENT] == [sha256]
    loaded = load_model(root)
    images = {f"item{k}": np.asarray(render_scene(np.random.default_rng(k), (160, 120))[0]) for k in range(4)}
    pd.testing.assert_frame_equal(loaded.predict(images), trained_model.predict(images))
    assert loaded.version == trained_model.version
    result = _prelabel_run(root)
    assert result.success
    assert result.get_asset_materialization_events()[-1].materialization.metadata["model_version"].value \
        == trained_model.version


def test_a_pickle_at_the_old_path_never_runs_and_the_run_says_to_retrain(root, tmp_path):
    layout = DataLayout(root)
    layout.models.mkdir(parents=True)
    (layout.models / "prelabel_model.pkl").write_bytes(_payload(tmp_path / "ran"))
    result = _prelabel_run(root)
    assert not result.success
    assert "no pre-label model at" in _failure(result) and "train_prelabel_model" in _failure(result)
    assert not (tmp_path / "ran").exists()


def test_a_pickle_swapped_in_for_the_model_with_a_rewritten_card_is_refused_and_never_runs(trained_model, root,
                                                                                           tmp_path):
    save_model(trained_model, root)
    layout = DataLayout(root)
    payload = _payload(tmp_path / "ran")
    layout.prelabel_model.write_bytes(payload)
    card = json.loads(layout.prelabel_model_card.read_text())
    card["sha256"] = hashlib.sha256(payload).hexdigest()  # the forger rewrites the sidecar too
    layout.prelabel_model_card.write_text(json.dumps(card))
    result = _prelabel_run(root)
    assert not result.success
    assert "is not the" in _failure(result) and "the audit log recorded when the model was saved" in _failure(result)
    assert not (tmp_path / "ran").exists()


def test_a_model_file_holding_a_type_outside_the_allow_list_is_refused_even_with_matching_hashes(trained_model,
                                                                                                 root):
    import skops.io as sio

    save_model(trained_model, root)
    layout = DataLayout(root)
    crafted = sio.dumps({"scene_model": trained_model.scene_model, "object_model": os.system})
    layout.prelabel_model.write_bytes(crafted)
    sha256 = hashlib.sha256(crafted).hexdigest()
    card = json.loads(layout.prelabel_model_card.read_text())
    layout.prelabel_model_card.write_text(json.dumps({**card, "sha256": sha256}))
    append_audit_event(root, MODEL_SAVED_EVENT, model_version=card["version"], sha256=sha256)  # even this
    with pytest.raises(ModelIntegrityError, match="types outside the allow-list: .*system"):
        load_model(root)
