"""Label Studio as the vendor's platform: projects, task import with predictions, export.

A thin client on Label Studio's REST API (``requests``). label-studio-sdk 2.x pins
opencv-python-headless below 4.13 and pulls nltk and a code generator into our environment;
the handful of endpoints a batch needs are stable, documented and small, so we call them
directly and keep Label Studio's dependencies in its own virtual environment.

Per batch (``send_batch``):

- a project titled with the batch id (found again by it, so a rerun reuses it) whose labeling
  config is generated from the ontology (``label_config``), with ``maximum_annotations`` set
  to the batch's overlap k;
- the batch's tasks imported with their pre-labels as predictions carrying ``model_version``;
  every task carries ``data.task_key`` (``<batch_id>/<task_id>``), and an import skips the
  keys already in the project, so rerunning a batch never duplicates tasks (LS #1165) and
  never touches the answers given so far;
- hidden gold tasks look like any other task: nothing in ``data`` or ``meta`` says gold.

Overlap k: Label Studio's open-source edition has no per-annotator task assignment (that is
Enterprise). Each annotator gets an account of the organization (``ensure_users``), the
project's ``maximum_annotations`` = k makes Label Studio stop handing a task out once k
annotators have answered it, and each annotation records the account that made it
(``completed_by``). Intake then holds the rest as with any vendor: one answer per annotator
per task, and the consensus stage expects k.

``collect_batch`` reads the project's JSON export and gives it our task ids, image file names
and annotator accounts back (``returned_export``): intake parses it as any Label Studio export.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit
from xml.sax.saxutils import quoteattr

from annotation_pipeline.layout import BatchFolder
from annotation_pipeline.ontology import Ontology
from annotation_pipeline.vendor.label_studio_format import IMAGE_NAME


def label_config(ontology: Ontology) -> str:
    """The labeling interface of the ontology: scene choices, rectangle and polygon labels."""
    raw = ontology.raw
    parts = ["<View>", f'  <Image name="{IMAGE_NAME}" value="$image" zoom="true"/>',
             f'  <Choices name={quoteattr(raw["scene"]["from_name"])} toName="{IMAGE_NAME}" choice="single" '
             'required="true">']
    parts += [f"    <Choice value={quoteattr(c)}/>" for c in ontology.scene_classes]
    parts.append("  </Choices>")
    tags = {"box": "RectangleLabels", "polygon": "PolygonLabels"}
    by_control: dict[tuple[str, str], list[str]] = {}
    for name, spec in raw["objects"].items():
        by_control.setdefault((spec["from_name"], spec["geometry"]), []).append(name)
    for (control, geometry), names in by_control.items():
        tag = tags[geometry]
        parts.append(f"  <{tag} name={quoteattr(control)} toName=\"{IMAGE_NAME}\">")
        parts += [f"    <Label value={quoteattr(n)}/>" for n in names]
        parts.append(f"  </{tag}>")
    parts.append("</View>")
    return "\n".join(parts)



# Label Studio keeps project titles to 50 characters (PROJECT_TITLE_MAX_LEN in 1.23).
MAX_TITLE = 50
LOCAL_FILES_PATH = "/data/local-files/"


class LabelStudioError(RuntimeError):
    """Label Studio answered with an error; the message names the call and Label Studio's words."""


@dataclass
class LabelStudioClient:
    """The REST calls a batch needs (Label Studio 1.23 API, ``Authorization: Token ...``)."""

    url: str
    token: str = field(repr=False)  # a secret: never in a repr, a log line or metadata
    timeout_s: float = 60.0

    def __post_init__(self) -> None:
        import requests

        self.url = self.url.rstrip("/")
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Token {self.token}"

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        import requests

        try:
            response = self.session.request(method, f"{self.url}{path}", timeout=self.timeout_s, **kwargs)
        except requests.RequestException as exc:
            raise LabelStudioError(f"Label Studio at {self.url} is not reachable ({type(exc).__name__}); "
                                   "start it with `.ci/label-studio start`") from None
        if response.status_code in (401, 403):
            raise LabelStudioError(f"{method} {path}: Label Studio at {self.url} refused the API token "
                                   f"(HTTP {response.status_code}); check LABEL_STUDIO_API_TOKEN")
        if response.status_code >= 400:
            raise LabelStudioError(f"{method} {path}: HTTP {response.status_code}: {response.text[:300]}")
        return response.json() if response.content else None

    def health(self) -> bool:
        try:
            self._call("GET", "/api/version")
            return True
        except LabelStudioError:
            return False

    # ---------------------------------------------------------------- projects and tasks

    def find_project(self, title: str) -> dict | None:
        page = self._call("GET", "/api/projects", params={"title": title, "page_size": 100})
        projects = page["results"] if isinstance(page, dict) else page
        return next((p for p in projects if p.get("title") == title), None)

    def ensure_project(self, title: str, config: str, overlap: int, description: str = "",
                       model_version: str = "") -> dict:
        """The project of this title, created with the config and overlap when missing.

        ``model_version`` picks the predictions Label Studio pre-fills the editor with.
        """
        if len(title) > MAX_TITLE:
            raise LabelStudioError(f"project title {title!r} is {len(title)} characters; Label Studio keeps "
                                   f"{MAX_TITLE}: use a shorter vendor name")
        found = self.find_project(title)
        if found is not None:
            return found
        return self._call("POST", "/api/projects", json={
            "title": title, "label_config": config, "description": description,
            "maximum_annotations": int(overlap), "show_skip_button": False, "enable_empty_annotation": False,
            "sampling": "Uniform sampling", "show_collab_predictions": True, "model_version": model_version})

    def tasks(self, project_id: int) -> list[dict]:
        """Every task of the project, with its annotations and predictions."""
        out: list[dict] = []
        page = 1
        while True:
            answer = self._call("GET", "/api/tasks", params={"project": project_id, "page": page,
                                                             "page_size": 500, "fields": "all"})
            out += answer["tasks"]
            if not answer["tasks"] or len(out) >= int(answer.get("total", 0)):
                return out
            page += 1

    def import_tasks(self, project_id: int, tasks: Iterable[dict]) -> int:
        """Import tasks whose ``data.task_key`` the project lacks; returns how many were new."""
        present = {t["data"].get("task_key") for t in self.tasks(project_id)}
        new = [t for t in tasks if t["data"]["task_key"] not in present]
        if new:
            self._call("POST", f"/api/projects/{project_id}/import", json=new,
                       params={"commit_to_project": "true"})
        return len(new)

    def ensure_local_files_storage(self, project_id: int, folder: Path) -> None:
        """Let the project's users see files of ``folder`` through ``/data/local-files/``.

        Label Studio 1.23 serves a local file only inside the path of a local-files import
        storage of a project the user may see (io_storages/localfiles/views.py); the storage is
        never synced, the tasks are imported through the API.
        """
        path = str(Path(folder).resolve())
        storages = self._call("GET", "/api/storages/localfiles/", params={"project": project_id})
        if not any(s.get("path") == path for s in storages):
            self._call("POST", "/api/storages/localfiles/", json={
                "project": project_id, "path": path, "title": "batch images", "use_blob_urls": True})

    def export_annotations(self, project_id: int) -> list[dict]:
        """The project's Label Studio JSON export (every task with its annotations)."""
        return self._call("GET", f"/api/projects/{project_id}/export", params={"exportType": "JSON"})

    # ---------------------------------------------------------------- accounts and annotations

    def users(self) -> list[dict]:
        return self._call("GET", "/api/users")

    def ensure_users(self, emails: Iterable[str]) -> dict[str, int]:
        """An account of the organization per e-mail (created when missing): e-mail -> user id."""
        known = {u["email"]: int(u["id"]) for u in self.users()}
        for email in emails:
            if email not in known:
                local = email.split("@", 1)[0]
                made = self._call("POST", "/api/users", json={"email": email, "username": email,
                                                              "first_name": local})
                known[email] = int(made["id"])
        return known

    def create_annotation(self, task_id: int, result: list[dict], lead_time: float, completed_by: int) -> dict:
        """An annotation of ``task_id`` in the name of the account ``completed_by``.

        Label Studio 1.23 keeps a ``completed_by`` given in the body (tasks/api.py
        ``AnnotationsListAPI.perform_create`` only fills it in when absent); ``updated_by`` stays
        the account whose token made the call.
        """
        return self._call("POST", f"/api/tasks/{task_id}/annotations",
                          json={"result": result, "lead_time": lead_time, "completed_by": int(completed_by)})


# ---------------------------------------------------------------- our batch <-> Label Studio

def task_key(batch_id: str, task_id: str) -> str:
    return f"{batch_id}/{task_id}"


def annotator_email(annotator_id: str, vendor: str) -> str:
    """An annotator's account: intake reads the annotator back as the e-mail's local part."""
    return f"{annotator_id}@{vendor}.example"


def local_files_url(path: Path, document_root: str = "/") -> str:
    """Label Studio's local-files URL of an image under its LOCAL_FILES_DOCUMENT_ROOT."""
    relative = Path(path).resolve().relative_to(Path(document_root).resolve())
    return f"{LOCAL_FILES_PATH}?d={quote(relative.as_posix())}"


def batch_tasks_for_import(import_file: bytes, batch_id: str, image_urls: Mapping[str, str]) -> list[dict]:
    """The handoff's Label Studio import tasks, keyed for idempotent import, with image URLs.

    ``image_urls`` maps each image file name to its URL: local files on the embedded default,
    presigned URLs in production. Gold tasks are keyed like any other; nothing says gold.
    """
    tasks = json.loads(import_file)
    out = []
    for task in tasks:  # one dict per task: JSON reshaping
        data = dict(task["data"])
        image = data["image"].rsplit("/", 1)[-1]
        data.update(image=image_urls[image], task_key=task_key(batch_id, str(task["id"])), task_id=str(task["id"]))
        out.append({"data": data, "predictions": task.get("predictions", [])})
    return out


def image_file_of(url: Any) -> Any:
    """The image file name in a task's URL (local-files ``?d=`` path, or a presigned URL's path)."""
    if not isinstance(url, str):
        return url
    parts = urlsplit(url)
    path = parse_qs(parts.query).get("d", [""])[0] if parts.path.endswith(LOCAL_FILES_PATH) else parts.path
    return unquote(path).rsplit("/", 1)[-1]


def returned_export(export: list[dict], batch_id: str, emails_by_user: Mapping[int, str]) -> list[dict]:
    """A project's export in the shape our intake reads from any vendor.

    Task ids become ours again (``data.task_id`` of this batch's key); the image is its file
    name; ``completed_by`` (a user id in Label Studio's export) becomes the account's e-mail,
    whose local part intake takes as the annotator. A task that is not one of this batch's
    keeps Label Studio's id as ``label-studio-<id>``, so intake quarantines it with that name
    rather than matching it to one of ours by accident.
    """
    out = []
    for task in export:  # JSON reshaping, one task at a time
        if not isinstance(task, dict):
            out.append(task)  # intake quarantines it as a malformed task
            continue
        data = task.get("data") if isinstance(task.get("data"), dict) else {}
        ours = data.get("task_key") == task_key(batch_id, str(data.get("task_id")))
        annotations = task.get("annotations")
        if isinstance(annotations, list):
            annotations = [_with_account(a, emails_by_user) for a in annotations]
        out.append({"id": int(data["task_id"]) if ours and str(data["task_id"]).isdigit()
                    else f"label-studio-{task.get('id')}",
                    "data": {"image": image_file_of(data.get("image"))}, "annotations": annotations})
    return out


def _with_account(annotation: Any, emails_by_user: Mapping[int, str]) -> Any:
    if not isinstance(annotation, dict) or not isinstance(annotation.get("completed_by"), int):
        return annotation
    user = annotation["completed_by"]
    email = emails_by_user.get(user)
    return {**annotation, "completed_by": {"id": user, "email": email} if email else user}


@dataclass
class SentBatch:
    project_id: int
    tasks_imported: int   # new in this call: 0 when the batch was sent before
    tasks_in_project: int


def send_batch(client: LabelStudioClient, folder: BatchFolder, ontology: Ontology,
               image_urls: Mapping[str, str], local_files: bool = False) -> SentBatch:
    """The batch's project (found by its title, the batch id, or created) with every task of the batch.

    Tasks already in the project (same ``task_key``) are not imported again, so a rerun adds
    nothing and keeps the answers given so far. With ``local_files`` the images are served by
    Label Studio from the batch folder (the URLs are ``local_files_url``s).
    """
    manifest = json.loads(folder.manifest.read_text())
    batch_id = manifest["batch_id"]
    description = (f"Batch {batch_id} for {manifest['vendor']}: ontology {manifest['ontology']['name']} "
                   f"{manifest['ontology']['version']}, guidelines {manifest['guidelines_version']}, "
                   f"overlap {manifest['overlap']}.\n\n{folder.guidelines.read_text()}")
    project = client.ensure_project(batch_id, label_config(ontology), int(manifest["overlap"]), description,
                                    model_version=str(manifest.get("model_version") or ""))
    if local_files:
        client.ensure_local_files_storage(int(project["id"]), folder.images)
    tasks = batch_tasks_for_import(folder.tasks_file.read_bytes(), batch_id, image_urls)
    new = client.import_tasks(int(project["id"]), tasks)
    return SentBatch(int(project["id"]), new, len(client.tasks(int(project["id"]))))


def collect_batch(client: LabelStudioClient, batch_id: str) -> list[dict] | None:
    """The batch's answers as an export intake reads (``returned_export``); None if never sent."""
    project = client.find_project(batch_id)
    if project is None:
        return None
    emails = {int(u["id"]): u["email"] for u in client.users()}
    return returned_export(client.export_annotations(int(project["id"])), batch_id, emails)
