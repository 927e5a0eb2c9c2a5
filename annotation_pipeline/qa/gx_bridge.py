"""Great Expectations 1.x, configured from code, one context per validation run.

Why a context per run, in memory: a file context shared under the data root is mutable state
(two partitions validating at once overwrite each other's ValidationDefinition and fail with
"ValidationDefinition ... was not found"), and its ``great_expectations.yml`` imports a
``plugins/`` folder and substitutes ``${VAR}`` from the environment: a file under the data root
must never run code or pull secrets. So no YAML is ever read: the context is ephemeral, its
configuration is written below, and when Data Docs are wanted the site is built in a private
temporary folder and then swapped in, whole, as the partition's site (:func:`publish_site`).

dagster-ge pins great-expectations < 1.0, so the bridge of GX results to our outcome objects
is ours (:func:`expectation_outcome`).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any

import great_expectations as gx
import pandas as pd
from great_expectations.checkpoint import UpdateDataDocsAction
from great_expectations.core.run_identifier import RunIdentifier
from great_expectations.data_context.types.base import (
    DataContextConfig,
    InMemoryStoreBackendDefaults,
    ProgressBarsConfig,
)

from annotation_pipeline.qa.data_docs import make_site_offline
from annotation_pipeline.qa.outcomes import ExpectationOutcome, plain

SITE_NAME = "local_site"


def _context_config(site_dir: Path | None) -> DataContextConfig:
    """Stores in memory; a Data Docs site (when wanted) in ``site_dir``; no analytics."""
    sites = {} if site_dir is None else {SITE_NAME: {
        "class_name": "SiteBuilder", "show_how_to_buttons": False,
        "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(site_dir)},
        "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"}}}
    return DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
        data_docs_sites=sites, analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False, metric_calculations=False))


class GXRunner:
    """Runs suites on DataFrames in a Great Expectations context of its own.

    ``docs_dir``: where this run's Data Docs site goes. The site is built in a private
    temporary folder, its pages rewritten to open offline (``qa.data_docs``: GX's pages load
    their styling from CDNs), and published there when the ``with`` block ends without an
    error; page URLs returned by :meth:`validate` already point at the published place.
    """

    def __init__(self, docs_dir: Path | None = None):
        self.docs_dir = Path(docs_dir) if docs_dir is not None else None
        self._site = Path(tempfile.mkdtemp(prefix="qa-gx-site-")) if docs_dir is not None else None
        self.context = gx.get_context(mode="ephemeral", project_config=_context_config(self._site))
        self.datasource = self.context.data_sources.add_pandas("returned_annotations")

    def __enter__(self) -> "GXRunner":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None and self._site is not None and self.docs_dir is not None:
                make_site_offline(self._site)
                publish_site(self._site, self.docs_dir)
        finally:
            if self._site is not None:
                shutil.rmtree(self._site, ignore_errors=True)

    def validate(self, frame: pd.DataFrame, suite: gx.ExpectationSuite, run_name: str = ""
                 ) -> tuple[Any, str | None]:
        """Returns (ExpectationSuiteValidationResult, file:// URL of its Data Docs page or None)."""
        name = suite.name
        asset = self.datasource.add_dataframe_asset(name)
        batch = asset.add_batch_definition_whole_dataframe("whole")
        stored_suite = self.context.suites.add(suite)
        definition = self.context.validation_definitions.add(
            gx.ValidationDefinition(name=name, data=batch, suite=stored_suite))
        if self._site is None:
            return definition.run(batch_parameters={"dataframe": frame}, result_format="BASIC"), None
        checkpoint = self.context.checkpoints.add(gx.Checkpoint(
            name=name, validation_definitions=[definition], result_format="BASIC",
            actions=[UpdateDataDocsAction(name="update_data_docs")]))
        result = checkpoint.run(batch_parameters={"dataframe": frame},
                                run_id=RunIdentifier(run_name=run_name or None))
        key, validation = next(iter(result.run_results.items()))
        urls = self.context.get_docs_sites_urls(resource_identifier=key)
        if not urls:
            return validation, None
        page = Path(urls[0]["site_url"].removeprefix("file://")).relative_to(self._site)
        return validation, "file://" + str(self.docs_dir / page)


def publish_site(site: Path, target: Path) -> Path:
    """Put a built Data Docs site at ``target`` atomically: readers see the old site or the new.

    ``target`` is a symbolic link to a hidden sibling folder holding one copy of a site;
    ``os.replace`` of the link is atomic on POSIX, and two runs publishing the same target at
    once each leave a whole site (the later one wins).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tag = uuid.uuid4().hex[:12]
    version = target.parent / f".{target.name}-{tag}"
    shutil.copytree(site, version)
    link = target.parent / f".{target.name}-{tag}.link"
    os.symlink(version.name, link)
    previous = target.parent / os.readlink(target) if target.is_symlink() else None
    if target.exists() and not target.is_symlink():  # a plain folder: written by an older version
        shutil.rmtree(target)
    os.replace(link, target)
    if previous is not None and previous != version:
        shutil.rmtree(previous, ignore_errors=True)
    return target


def expectation_outcome(gx_result: Any, *, reason: str, column: str, description: str,
                        quarantined_count: int, default_count: int,
                        examples: list[dict[str, Any]]) -> ExpectationOutcome:
    """One GX ExpectationValidationResult as our outcome, beside the count of our own mask."""
    stats = gx_result.result or {}
    return ExpectationOutcome(
        reason=reason, expectation_type=gx_result.expectation_config.type, column=column,
        description=description, success=bool(gx_result.success),
        element_count=int(stats.get("element_count", default_count)),
        unexpected_count=int(stats.get("unexpected_count", 0) or 0),
        quarantined_count=quarantined_count, examples=examples)


def expectation_results(validation: Any) -> list[dict[str, Any]]:
    """Each expectation's result of a GX validation, as rows a person reads in the Dagster UI
    (the Data Docs page holds the same, but a ``file://`` page does not open from the UI)."""
    rows = []
    for r in validation.results:
        stats, config = r.result or {}, r.expectation_config
        percent = stats.get("unexpected_percent")
        rows.append({"expectation": config.type, "column": config.kwargs.get("column", ""),
                     "success": bool(r.success), "element_count": plain(stats.get("element_count")),
                     "unexpected_count": plain(stats.get("unexpected_count")),
                     "unexpected_percent": None if percent is None else round(float(percent), 3),
                     "observed_value": plain(stats.get("observed_value")),
                     "description": config.description or ""})
    return rows


def validation_passed(runner: GXRunner, frame: pd.DataFrame, suite: gx.ExpectationSuite,
                      run_name: str) -> tuple[bool, str | None, list[dict[str, Any]]]:
    """Validate an aggregated frame: (passed, Data Docs URL, :func:`expectation_results`);
    an empty frame has nothing to judge and passes, with no page and no results."""
    if not len(frame):
        return True, None, []
    result, url = runner.validate(frame, suite, run_name)
    return bool(result.success), url, expectation_results(result)
