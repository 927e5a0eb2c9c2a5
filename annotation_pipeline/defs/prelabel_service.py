"""The pre-label model seam: one small interface, the built-in model and an external ML backend.

``build_resources`` puts the configured flavour under the resource key ``prelabeler``:
``ANNOTATION_PIPELINE_PRELABEL_BACKEND_URL`` set means the team's own model behind a Label Studio
ML backend, unset the built-in scikit-learn model (the local default).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd

from annotation_pipeline.contracts import QUARANTINE
from annotation_pipeline.prelabel.ml_backend import MLBackendError, PredictionBatch, predict_over_http
from annotation_pipeline.settings import PRELABEL_BACKEND_TOKEN_ENV, Settings


class PrelabelServiceError(RuntimeError):
    """No pre-labels could be made: the message says why and what to do, in one line."""


class PrelabelModelService(dg.ConfigurableResource, ABC):
    """The pre-label model: makes pre-labels (with the model version) and, when it is ours, learns.

    Two flavours: the built-in scikit-learn model stored under the data root, and an external
    model behind a Label Studio ML backend (``ANNOTATION_PIPELINE_PRELABEL_BACKEND_URL``).
    """

    @abstractmethod
    def predict(self, images: dict[str, np.ndarray], classes: set[str], partition_date: str = "") -> PredictionBatch:
        """Pre-labels of {item_id: rgb}; raises PrelabelServiceError (one line) when none can be made."""

    @abstractmethod
    def retrain(self, images: dict[str, np.ndarray], labels: pd.DataFrame, source: str) -> dict | None:
        """Learn from labeled images; the saved model's facts, or None when the model is trained elsewhere."""

    @abstractmethod
    def describe(self) -> str:
        """Which model this is, for metadata (never a secret)."""


class BuiltinPrelabelModel(PrelabelModelService):
    """The built-in model: skops file + card under ``root/models``, sha256-checked against the audit log."""

    root: str

    def predict(self, images: dict[str, np.ndarray], classes: set[str], partition_date: str = "") -> PredictionBatch:
        from annotation_pipeline.prelabel.model import ModelIntegrityError, load_model

        try:
            model = load_model(Path(self.root))
        except ModelIntegrityError as exc:
            raise PrelabelServiceError(str(exc)) from None
        return PredictionBatch(model.predict(images), model.version, QUARANTINE.empty())

    def retrain(self, images: dict[str, np.ndarray], labels: pd.DataFrame, source: str) -> dict | None:
        from annotation_pipeline.prelabel.model import save_model, train_prelabel_model

        model = train_prelabel_model(images, labels, source=source)
        sha256 = save_model(model, Path(self.root))
        return {"model_version": model.version, "model_sha256": sha256, "trained_on": model.trained_on,
                "source": source, **model.metrics}

    def describe(self) -> str:
        return "built-in scikit-learn model"


class LabelStudioMLBackend(PrelabelModelService):
    """A team's own model served as a Label Studio ML backend: ``POST <url>/predict``."""

    url: str
    timeout_s: float = 60.0
    token: str | None = None

    def predict(self, images: dict[str, np.ndarray], classes: set[str], partition_date: str = "") -> PredictionBatch:
        try:
            return predict_over_http(self.url, images, classes, self.timeout_s, self.token, partition_date)
        except MLBackendError as exc:
            raise PrelabelServiceError(str(exc)) from None

    def retrain(self, images: dict[str, np.ndarray], labels: pd.DataFrame, source: str) -> dict | None:
        return None  # its team trains it; we measure it on gold like our own

    def describe(self) -> str:
        return f"Label Studio ML backend at {self.url}"


def build_prelabel_service(settings: Settings) -> PrelabelModelService:
    """The configured pre-label model: an ML backend when its URL is set, else the built-in one."""
    if settings.prelabel_backend_url:
        token = dg.EnvVar(PRELABEL_BACKEND_TOKEN_ENV) if settings.prelabel_backend_token else None
        return LabelStudioMLBackend(url=settings.prelabel_backend_url, token=token)
    return BuiltinPrelabelModel(root=str(settings.data_root))
