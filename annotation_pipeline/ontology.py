"""The ontology (classes and their geometry) and the labeling guidelines, versioned with the code.

Their files are named in ``layout.ProjectFiles``; everything a run produces lives under the
data root instead.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from annotation_pipeline.layout import project_files


@dataclass(frozen=True)
class Ontology:
    name: str
    version: str
    scene_classes: tuple[str, ...]
    object_geometry: dict[str, str]   # class -> "box" | "polygon"
    raw: dict

    @property
    def object_classes(self) -> tuple[str, ...]:
        return tuple(self.object_geometry)


def load_ontology(path: Path | None = None) -> Ontology:
    raw = json.loads(Path(path or project_files().ontology).read_text())
    return Ontology(
        name=raw["name"], version=raw["version"],
        scene_classes=tuple(raw["scene"]["classes"]),
        object_geometry={k: v["geometry"] for k, v in raw["objects"].items()},
        raw=raw,
    )


@dataclass(frozen=True)
class Guidelines:
    version: str
    text: str
    sha256: str


def load_guidelines(path: Path | None = None) -> Guidelines:
    path = Path(path or project_files().guidelines)
    text = path.read_text()
    match = re.search(r"^version:\s*(\S+)", text, re.MULTILINE)
    if not match:
        raise ValueError(f"{path}: the front matter has no 'version:' line")
    return Guidelines(match.group(1), text, hashlib.sha256(text.encode()).hexdigest())


def ontology_dict(ontology: Ontology | dict[str, Any]) -> dict[str, Any]:
    """The ontology as its JSON dict: accepts an ``Ontology`` (``.raw``) or the dict."""
    return ontology.raw if hasattr(ontology, "raw") else ontology


def ontology_labels(ontology: Ontology | dict[str, Any]) -> dict[str, list[str]]:
    """Allowed labels per annotation kind: {"choice": [...], "box": [...], "polygon": [...]}."""
    raw = ontology_dict(ontology)
    labels: dict[str, list[str]] = {"choice": list(raw["scene"]["classes"]), "box": [], "polygon": []}
    for name, spec in raw["objects"].items():
        labels[spec["geometry"]].append(name)
    return labels
