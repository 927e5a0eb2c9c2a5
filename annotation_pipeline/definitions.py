"""The code location: every stage's definitions merged, with the profile's resources."""

from __future__ import annotations

import dagster as dg

from annotation_pipeline.defs import (
    anonymization,
    automation,
    consensus,
    ingestion,
    monitoring,
    prelabel,
    qa,
    release,
    vendor,
)
from annotation_pipeline.defs.resources import build_executor, build_resources

STAGES = [ingestion, anonymization, prelabel, vendor, qa, consensus, release, monitoring, automation]


def build_definitions(profile: str | None = None, root=None, resources: dict | None = None) -> dg.Definitions:
    """The definitions of a profile; ``resources`` replaces some of them (tests swap seams here)."""
    return dg.Definitions.merge(*(stage.defs for stage in STAGES),
                                dg.Definitions(resources={**build_resources(profile, root), **(resources or {})},
                                               executor=build_executor(profile)))


defs = build_definitions()
