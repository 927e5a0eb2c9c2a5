"""Label Studio as the vendor's platform: projects, task import with predictions, export.

A thin client on Label Studio's REST API (``requests``). label-studio-sdk 2.x pins
opencv-python-headless below 4.13 and pulls nltk and a code generator into our environment;
the handful of endpoints a batch needs are stable, documented and small, so we call them
directly and keep Label Studio's dependencies in its own virtual environment.

Per batch (``sync_batch``):

- a project whose labeling config is generated from the ontology (``label_config``), with
  ``maximum_annotations`` set to the batch's overlap k, so Label Studio hands each task to k
  different annotators;
- the batch's tasks imported with their pre-labels as predictions carrying ``model_version``;
  every task carries ``data.task_key`` (``<batch_id>/<task_id>``), and an import skips the
  keys already in the project, so rerunning a batch never duplicates tasks (LS #1165);
- hidden gold tasks look like any other task: nothing in ``data`` or ``meta`` says gold.

``export_annotations`` returns the project's JSON export, which our intake parses as any
Label Studio export file.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from xml.sax.saxutils import quoteattr

from annotation_pipeline.ontology import Ontology

IMAGE_NAME = "image"


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


class LabelStudioError(RuntimeError):
    """Label Studio answered with an error; the message names the call and Label Studio's words."""


@dataclass
class LabelStudioClient:
    url: str
    token: str
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
        if response.status_code >= 400:
            raise LabelStudioError(f"{method} {path}: HTTP {response.status_code}: {response.text[:300]}")
        return response.json() if response.content else None

    def health(self) -> bool:
        try:
            self._call("GET", "/api/version")
            return True
        except LabelStudioError:
            return False

    def find_project(self, title: str) -> dict | None:
        page = self._call("GET", "/api/projects", params={"title": title, "page_size": 1000})
        projects = page["results"] if isinstance(page, dict) else page
        return next((p for p in projects if p.get("title") == title), None)

    def ensure_project(self, title: str, config: str, overlap: int, description: str = "") -> dict:
        """The project of this title, created with the config and overlap when missing."""
        found = self.find_project(title)
        if found is not None:
            return found
        return self._call("POST", "/api/projects", json={
            "title": title, "label_config": config, "description": description,
            "maximum_annotations": int(overlap), "show_skip_button": False, "enable_empty_annotation": False,
            "sampling": "Uniform sampling", "show_collab_predictions": True})

    def tasks(self, project_id: int) -> list[dict]:
        """Every task of the project, with its annotations and predictions."""
        out, page = [], 1
        while True:
            answer = self._call("GET", "/api/tasks", params={"project": project_id, "page": page, "page_size": 500,
                                                             "fields": "all"})
            batch = answer["tasks"] if isinstance(answer, dict) else answer
            out += batch
            if len(batch) < 500:
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

    def export_annotations(self, project_id: int) -> list[dict]:
        """The project's Label Studio JSON export (every task with its annotations)."""
        return self._call("GET", f"/api/projects/{project_id}/export", params={"exportType": "JSON"})

    def create_annotation(self, task_id: int, result: list[dict], lead_time: float, completed_by: int | None = None
                          ) -> dict:
        body: dict[str, Any] = {"result": result, "lead_time": lead_time}
        if completed_by is not None:
            body["completed_by"] = completed_by
        return self._call("POST", f"/api/tasks/{task_id}/annotations", json=body)


def task_key(batch_id: str, task_id: str) -> str:
    return f"{batch_id}/{task_id}"


def batch_tasks_for_import(import_file: bytes, batch_id: str, image_url: str) -> list[dict]:
    """The handoff's Label Studio import tasks, keyed for idempotent import, with image URLs.

    ``image_url`` is a format string with ``{image}``: the local-files URL on the embedded
    default, a presigned URL in production.
    """
    tasks = json.loads(import_file)
    out = []
    for task in tasks:  # one dict per task: JSON reshaping
        data = dict(task["data"])
        image = data["image"].rsplit("/", 1)[-1]
        data.update(image=image_url.format(image=image), task_key=task_key(batch_id, str(task["id"])),
                    task_id=str(task["id"]))
        out.append({"data": data, "predictions": task.get("predictions", [])})
    return out
