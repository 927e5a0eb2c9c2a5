"""The Label Studio vendor exchange: batches go to a Label Studio server, answers come back by its export.

Chosen by configuration (``ANNOTATION_PIPELINE_VENDOR_EXCHANGE=label_studio``); the folder
exchange stays the embedded default. The logic lives in ``vendor.label_studio`` (REST calls,
task building, export reshaping) and ``sample_world.workforce`` (the simulated annotators);
this resource only moves the batch, builds the image URLs and writes the collected export
where intake reads every vendor's returns.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from annotation_pipeline.atomic_files import write_bytes_atomic
from annotation_pipeline.defs.resources import S3Vendor, VendorExchange, move_to_outbox, simulated_answers
from annotation_pipeline.layout import BatchFolder, DataLayout
from annotation_pipeline.ontology import load_ontology
from annotation_pipeline.settings import load_settings
from annotation_pipeline.vendor.handoff import VendorBatch
from annotation_pipeline.vendor.label_studio import LabelStudioClient, collect_batch, local_files_url, send_batch


class LabelStudioVendor(VendorExchange):
    """Vendor exchange through a Label Studio server (``url``; the API token comes from settings).

    Images: on the embedded default the batch folder moves to the outbox under ``root`` and the
    tasks point at it through Label Studio's local-files storage (the server's
    ``LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT`` is ``local_files_root``); with ``s3_bucket`` the
    batch is uploaded there and the tasks carry presigned GET URLs, as the S3 exchange sends.
    With ``simulate_workforce`` the simulated annotators answer in Label Studio, each as their
    own account. The token is read from settings when a call is made: it is never part of
    this resource's config, so it cannot show in the UI, a run's config or a log line.
    """

    url: str
    root: str
    local_files_root: str = "/"
    simulate_workforce: bool = True
    seed: int = 0
    s3_bucket: str | None = None
    s3_prefix: str = "vendors"
    endpoint_url: str | None = None

    def client(self) -> LabelStudioClient:
        return LabelStudioClient(self.url, load_settings().label_studio_token())

    def exchange(self) -> str:
        return f"label_studio at {self.url}"

    def holds(self, batch_id: str) -> bool:
        """A batch is there while its project is: a server reset or a deleted project sends it again."""
        return self.client().find_project(batch_id) is not None

    def _layout(self) -> DataLayout:
        return DataLayout(Path(self.root))

    def deliver(self, batch: VendorBatch) -> str:
        if self.s3_bucket:
            uploader = S3Vendor(vendor=self.vendor, bucket=self.s3_bucket, prefix=self.s3_prefix,
                                endpoint_url=self.endpoint_url, download_root=self.root)
            _, urls = uploader.upload(batch)
            folder = BatchFolder(batch.folder)
        else:
            folder = BatchFolder(move_to_outbox(batch, self._layout().outbox_batch(self.vendor, batch.batch_id)))
            urls = {p.name: local_files_url(p, self.local_files_root) for p in sorted(folder.images.iterdir())}
        client = self.client()
        sent = send_batch(client, folder, load_ontology(), urls, local_files=not self.s3_bucket)
        if self.simulate_workforce:
            self._simulate(client, sent.project_id, batch)
        if self.s3_bucket:
            shutil.rmtree(batch.folder)
        return f"{self.url}/projects/{sent.project_id}"

    def _simulate(self, client: LabelStudioClient, project_id: int, batch: VendorBatch) -> int:
        from annotation_pipeline.sample_world.workforce import answer_in_label_studio

        answers, profiles = simulated_answers(Path(self.root), batch, self.seed)
        return answer_in_label_studio(client, project_id, answers, batch.tasks, profiles, self.vendor, load_ontology())

    def collect_returns(self, batch_id: str) -> tuple[Path, list[Path]]:
        """The project's export, written to the batch's inbox folder (rewritten only when it changed)."""
        layout = self._layout()
        inbox = layout.inbox(self.vendor)
        export = collect_batch(self.client(), batch_id)
        if export is None:  # never sent to this server: whatever sits in the inbox folder is judged
            return inbox, []
        path = layout.label_studio_export(self.vendor, batch_id)
        content = json.dumps(export, indent=1, sort_keys=True).encode()
        if not path.exists() or path.read_bytes() != content:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_bytes_atomic(path, content)
        return inbox, [path]

