import os
from pathlib import Path

import pandas as pd
import pytest

os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")


@pytest.fixture(scope="session")
def gold_root(tmp_path_factory) -> Path:
    """A data root with the sample gold set (images + labels), shared read-only by tests."""
    from annotation_pipeline.sample_world.sample_data import generate_gold_set

    root = tmp_path_factory.mktemp("gold_root")
    generate_gold_set(root)
    return root


@pytest.fixture(scope="session")
def trained_model(gold_root):
    from annotation_pipeline.prelabel.model import load_rgb, train_prelabel_model

    labels = pd.read_parquet(gold_root / "gold" / "gold_labels.parquet")
    images = {p.stem: load_rgb(p) for p in sorted((gold_root / "gold" / "images").glob("*.png"))}
    return train_prelabel_model(images, labels)


@pytest.fixture(scope="session")
def label_studio():
    """A client of the live Label Studio server, started by ``.ci/label-studio start`` when it does not
    answer (label_studio_server: installed on first use, left running); the test fails with the
    reason and the log when it cannot start."""
    from annotation_pipeline.settings import load_settings
    from annotation_pipeline.vendor.label_studio import LabelStudioClient, LabelStudioError
    from annotation_pipeline_tests.label_studio_server import start_server

    settings = load_settings()
    client = LabelStudioClient(settings.label_studio_url, settings.label_studio_token(), timeout_s=30)
    try:
        client.users()
    except LabelStudioError:
        problem = start_server()
        if problem is None:
            try:
                client.users()
            except LabelStudioError as exc:
                problem = str(exc)
        if problem is not None:
            pytest.fail(f"label_studio tests need Label Studio at {settings.label_studio_url}: {problem} "
                        "(deselect them with -m \"not label_studio\")", pytrace=False)
    return client
