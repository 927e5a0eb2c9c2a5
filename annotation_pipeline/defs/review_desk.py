"""The review desk: where a day's review tasks go and reviewers' decision files come back from.

One seam (``ReviewDesk``) with the local folder flavour; a Label Studio review project through the
vendor's Label Studio client would be the other.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

import dagster as dg
import pandas as pd

from annotation_pipeline.layout import DataLayout


class ReviewDesk(dg.ConfigurableResource, ABC):
    """Puts a day's review tasks in front of reviewers and collects their decision files."""

    @abstractmethod
    def send(self, partition_date: str, tasks: pd.DataFrame, sources: pd.DataFrame) -> str:
        """Deliver REVIEW_TASKS (``sources``: item id -> image path, size, is_gold); return where to.
        Sending the same tasks again changes nothing."""

    @abstractmethod
    def collect(self, partition_date: str) -> tuple[Path, list[Path]]:
        """(returns folder, every entry in it) for a day, as local files ready to judge."""


class LocalReviewFolder(ReviewDesk):
    """Review tasks in ``ROOT/review/<day>/`` (tasks.json importable into a Label Studio review
    project), decisions from ``ROOT/review/<day>/returns/``.

    With ``simulate_reviewer`` a simulated reviewer (sample_world.reviewer) decides each day's
    tasks at once from the sample truth, right with probability ``reviewer_accuracy``; without
    it, reviewers put their decision files in the returns folder. A Label Studio review project
    (through the vendor's Label Studio client) is the other flavour, not built yet.
    """

    root: str
    simulate_reviewer: bool = True
    reviewer_id: str = "rev-01"
    reviewer_accuracy: float = 0.95
    seed: int = 0

    def _folder(self, partition_date: str):
        return DataLayout(Path(self.root)).review_folder(partition_date)

    def send(self, partition_date: str, tasks: pd.DataFrame, sources: pd.DataFrame) -> str:
        from annotation_pipeline.consensus.review_tasks import write_review_folder
        from annotation_pipeline.ontology import load_ontology

        folder, ontology = self._folder(partition_date), load_ontology()
        write_review_folder(tasks, sources, folder, ontology)
        if self.simulate_reviewer and len(tasks):
            from annotation_pipeline.sample_world.reviewer import simulate_reviewer_returns
            from annotation_pipeline.sample_world.workforce import seed_for_batch

            simulate_reviewer_returns(Path(self.root), tasks, folder, list(ontology.scene_classes),
                                      reviewer_id=self.reviewer_id, accuracy=self.reviewer_accuracy,
                                      seed=seed_for_batch(f"review-{partition_date}") + self.seed)
        return str(folder.path)

    def collect(self, partition_date: str) -> tuple[Path, list[Path]]:
        from annotation_pipeline.consensus.review_decisions import decision_files

        returns = self._folder(partition_date).returns
        return returns, decision_files(returns)
