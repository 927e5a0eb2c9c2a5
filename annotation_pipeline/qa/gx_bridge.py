"""Great Expectations 1.x, configured from code, one context per validation.

Why a context of our own, in memory: a file context shared under the data root is mutable state
(two partitions validating at once overwrite each other's ValidationDefinition and fail with
"ValidationDefinition ... was not found"), and its ``great_expectations.yml`` imports a
``plugins/`` folder and substitutes ``${VAR}`` from the environment: a file under the data root
must never run code or pull secrets. So no YAML is ever read: the context is ephemeral and its
configuration is written below.

Data Docs, when wanted, are published one validation to a folder that no later run touches
(:func:`publish_site`): ``docs_dir/<key>/`` holds a whole GX site (index, suite page, the
validation page), built in a private temporary folder, rewritten to open offline
(``qa.data_docs``) and renamed into place. ``key`` is a hash of what the page shows (the
validation result without its run time and random ids, GX's fingerprint of the data included),
so an identical rerun finds its folder already there and reuses it, and a rerun on changed data
gets a new folder while the path a check result of the earlier run names still opens. The
folder above the sites (the day's) carries an index of every publication, newest first
(``qa.data_docs.write_day_index``, under a lock).

dagster-ge pins great-expectations < 1.0, so the bridge of GX results to our outcome objects
is ours (:func:`expectation_outcome`).
"""

from __future__ import annotations

import errno
import hashlib
import json
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

from annotation_pipeline.qa.data_docs import (
    DAY_INDEX,
    OFFLINE_FORMAT,
    PUBLICATION_FILE,
    Publication,
    link_day_index,
    make_site_offline,
    prune_unused_static,
    write_day_index,
)
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


def _context(site_dir: Path | None):
    context = gx.get_context(mode="ephemeral", project_config=_context_config(site_dir))
    return context, context.data_sources.add_pandas("returned_annotations")


class GXRunner:
    """Runs suites on DataFrames in Great Expectations contexts of its own.

    ``docs_dir``: where Data Docs go, one folder per validation (:func:`publish_site`); each
    validation then gets a context of its own (about 20 ms) so that its site holds it alone.
    Without ``docs_dir`` one context runs every validation and no page is written.
    """

    def __init__(self, docs_dir: Path | None = None):
        self.docs_dir = Path(docs_dir) if docs_dir is not None else None
        self.context, self.datasource = _context(None) if self.docs_dir is None else (None, None)

    def __enter__(self) -> "GXRunner":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        return None  # each validation's site is published (or thrown away) by validate() itself

    def validate(self, frame: pd.DataFrame, suite: gx.ExpectationSuite, run_name: str = ""
                 ) -> tuple[Any, str | None]:
        """Returns (ExpectationSuiteValidationResult, file:// URL of its Data Docs page or None)."""
        if self.docs_dir is None:
            definition = _definition(self.context, self.datasource, suite)
            return definition.run(batch_parameters={"dataframe": frame}, result_format="BASIC"), None
        site = Path(tempfile.mkdtemp(prefix="qa-gx-site-"))
        try:
            context, datasource = _context(site)
            definition = _definition(context, datasource, suite)
            checkpoint = context.checkpoints.add(gx.Checkpoint(
                name=suite.name, validation_definitions=[definition], result_format="BASIC",
                actions=[UpdateDataDocsAction(name="update_data_docs")]))
            result = checkpoint.run(batch_parameters={"dataframe": frame},
                                    run_id=RunIdentifier(run_name=run_name or None))
            key, validation = next(iter(result.run_results.items()))
            urls = context.get_docs_sites_urls(resource_identifier=key)
            if not urls:
                return validation, None
            page = Path(urls[0]["site_url"].removeprefix("file://")).relative_to(site)
            published = publish_site(site, self.docs_dir, _publication(validation, page, self.docs_dir.name))
            return validation, "file://" + str(published / published_page(published))
        finally:
            shutil.rmtree(site, ignore_errors=True)


def _definition(context, datasource, suite: gx.ExpectationSuite):
    batch = datasource.add_dataframe_asset(suite.name).add_batch_definition_whole_dataframe("whole")
    return context.validation_definitions.add(
        gx.ValidationDefinition(name=suite.name, data=batch, suite=context.suites.add(suite)))


# What changes between two runs of the same validation on the same data, and is left out of its key.
_VOLATILE_META = ("validation_id", "checkpoint_id", "validation_time", "run_id", "batch_markers")


def content_key(validation: Any) -> str:
    """A name for the folder of a validation's site: equal for an identical rerun (same suite,
    same data, same results, same run name), different when any of those changed."""
    d = validation.to_json_dict()
    meta = d.get("meta") or {}
    stable = {
        "format": OFFLINE_FORMAT,
        "result": {k: v for k, v in d.items() if k not in ("meta", "id", "results")},
        "results": [{**r, "expectation_config": {k: v for k, v in (r.get("expectation_config") or {}).items()
                                                 if k != "id"}} for r in d.get("results", [])],
        "meta": {k: v for k, v in meta.items() if k not in _VOLATILE_META},
        "run_name": (meta.get("run_id") or {}).get("run_name"),
        "data": (meta.get("batch_markers") or {}).get("pandas_data_fingerprint"),
    }
    return hashlib.sha256(json.dumps(stable, sort_keys=True, default=str).encode()).hexdigest()[:20]


def _publication(validation: Any, page: Path, site: str) -> Publication:
    stats = validation.statistics or {}
    run_id = validation.to_json_dict().get("meta", {}).get("run_id") or {}
    return Publication(
        key=content_key(validation), site=site, suite=validation.suite_name,
        run_name=run_id.get("run_name") or "", run_time=str(run_id.get("run_time") or ""),
        success=bool(validation.success), evaluated=int(stats.get("evaluated_expectations") or 0),
        successful=int(stats.get("successful_expectations") or 0), page=page.as_posix())


def published_page(folder: Path) -> str:
    """The validation page of a published folder, relative to it (read from its publication file)."""
    return Publication.read(folder / PUBLICATION_FILE).page


def publish_site(site: Path, docs_dir: Path, publication: Publication) -> Path:
    """Put one validation's built site at ``docs_dir/<publication.key>`` and list it in the day's
    index; returns the folder. A folder once there is never replaced or removed.

    The site is made offline, its unused static files dropped (GX copies 4 MB of images and
    fonts into every site; the pages use the favicon), and copied to a hidden temporary sibling
    that ``os.rename`` then moves into place: readers see no folder or a whole one. When the
    folder is already there (an identical rerun, or an identical run publishing at the same
    moment and renaming first) the copy is dropped and the existing folder is the answer.
    """
    docs_dir = Path(docs_dir)
    target = docs_dir / publication.key
    if not (target / PUBLICATION_FILE).is_file():
        make_site_offline(site)
        prune_unused_static(site)
        link_day_index(site, f"../../{DAY_INDEX}")  # site at <day>/<site>/<key>/
        publication.write(site / PUBLICATION_FILE)
        docs_dir.mkdir(parents=True, exist_ok=True)
        staging = docs_dir / f".{publication.key}-{uuid.uuid4().hex[:8]}.tmp"
        shutil.copytree(site, staging)
        try:
            os.rename(staging, target)
        except OSError as exc:
            shutil.rmtree(staging, ignore_errors=True)
            if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY) or not (target / PUBLICATION_FILE).is_file():
                raise
    write_day_index(docs_dir.parent)
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
