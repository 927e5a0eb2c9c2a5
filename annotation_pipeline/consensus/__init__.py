"""Consensus: aggregators of class answers, box and polygon merging, agreement, the review queue.

Laid out as crowd-kit is, one module per aggregator: ``encoding`` (answers as integer codes, the
shared base), ``majority_vote``, ``gold_weighted_vote``, ``dawid_skene``, ``bayesian_dawid_skene``
(hierarchical priors; also the one-coin model), ``glad`` and ``mace`` (vectorized EM),
``ambiguous_items`` (Dawid-Skene or MACE with items that mislead everyone),
``model_choice`` (held-out answer likelihood picks among them) and ``auto`` (the default, the
chosen model or models, and ``aggregate_labels``); ``calibration``, ``boxes``, ``agreement``, ``review`` (dismissal and the
budgeted queue) and ``stage`` (``run_consensus``, the entry point the asset calls).

Pure logic: no Dagster import (a test holds this); the wiring is ``defs/consensus.py``. Nothing
is imported here, so a command that needs only box merging does not pay for scipy.
"""
