"""Majority vote: the baseline every other aggregator must beat."""

from __future__ import annotations

import numpy as np
import pandas as pd

from annotation_pipeline.consensus.encoding import _Aggregator, encode_answers


class MajorityVote(_Aggregator):
    """Plain vote; confidence = share of the winning label's votes (gold is ignored)."""

    method = "mv"

    def fit(self, answers: pd.DataFrame, gold: pd.DataFrame | None = None) -> MajorityVote:
        enc = encode_answers(answers, gold)
        counts = enc.vote_counts()
        self._set_outputs(enc, counts / np.maximum(counts.sum(axis=0), 1.0))
        return self

