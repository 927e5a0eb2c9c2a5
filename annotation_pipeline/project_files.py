"""Files versioned with the code under ``data/``: ontology, guidelines, sample-data settings.

Everything a run produces lives under a data root instead (``$ANNOTATION_PIPELINE_ROOT``,
default ``./data/runtime``, ignored by git).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

DATA_DIR = Path(os.environ.get("ANNOTATION_PIPELINE_DATA_DIR",
                               Path(__file__).resolve().parent.parent / "data"))
ONTOLOGY_PATH = DATA_DIR / "ontology" / "v1.json"
GUIDELINES_PATH = DATA_DIR / "guidelines" / "v1.md"
SAMPLE_SETTINGS_PATH = DATA_DIR / "sample_settings.json"
ANONYMIZATION_POLICY_PATH = DATA_DIR / "anonymization_policy.json"


def default_data_root() -> Path:
    return Path(os.environ.get("ANNOTATION_PIPELINE_ROOT", "./data/runtime")).resolve()


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


def load_ontology(path: Path = ONTOLOGY_PATH) -> Ontology:
    raw = json.loads(Path(path).read_text())
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


def load_guidelines(path: Path = GUIDELINES_PATH) -> Guidelines:
    text = Path(path).read_text()
    match = re.search(r"^version:\s*(\S+)", text, re.MULTILINE)
    if not match:
        raise ValueError(f"{path}: the front matter has no 'version:' line")
    return Guidelines(match.group(1), text, hashlib.sha256(text.encode()).hexdigest())
