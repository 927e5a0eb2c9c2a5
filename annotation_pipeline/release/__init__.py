"""Release: DVC-versioned datasets, their provenance and quality report.

``store`` publishes (one publisher at a time, on a verified parent), ``integrity`` checks a
history against its anchors (manifest, index line, hash-chained audit event, DVC),
``recovery`` holds the publish lock and cleans what a crashed publish left, ``report`` builds
provenance and the quality report.

Pure logic: no Dagster import (a test holds this); the wiring is ``defs/release.py``.
"""
