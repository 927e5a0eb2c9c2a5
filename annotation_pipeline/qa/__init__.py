"""QA: the Great Expectations row suite, batch health and annotator scorecards.

Modules: ``outcomes`` (thresholds, outcome objects), ``gx_bridge`` (a GX context per run,
configured from code; GX results to outcomes; Data Docs published atomically),
``check_columns`` (derived columns, vectorized), ``row_suite`` (row rules, validation,
quarantine reasons), ``gold`` (gold answers judged), ``batch_health`` (batch-level checks),
``scorecards`` (annotator scorecards, lead-time statistics).

Pure logic: no Dagster import (a test holds this); the wiring is ``defs/qa.py``.
"""

from annotation_pipeline.settings import silence_phone_home

silence_phone_home()  # no internet here: GX must not phone home before any module imports it
