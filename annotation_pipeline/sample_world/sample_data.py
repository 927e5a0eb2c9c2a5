"""Deterministic sample data that needs no download.

Generates street-scene images (a scene condition plus cars, people, bikes as boxes and signs
as triangles) with the ground truth kept aside for evaluation and for the simulated
workforce, sidecar metadata full of fake personal data for the anonymizer to remove, a few
real photos that scikit-image ships (one with a face), byte-identical duplicates and broken
files, so that every stage has real work, including quarantine and dedupe.

Layout written under a data root:

- ``landing/<date>/``    what arrives for a daily partition: images + ``<name>.json`` sidecars
- ``sample_truth/truth-<date>.parquet``   ground truth by item_id (never read by the pipeline)
- ``gold/``              the gold set: images + ``gold_labels.parquet`` (GOLD_LABELS contract)
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import shapely
from PIL import Image, ImageDraw

from annotation_pipeline.atomic_files import write_parquet_atomic
from annotation_pipeline.contracts import GOLD_LABELS, item_id_for_bytes
from annotation_pipeline.layout import DataLayout, project_files

SCENES = ("day", "night", "fog", "rain")
# Background RGB by scene: what makes the scene learnable from global colour statistics.
_SCENE_BACKGROUND = {
    "day": (150, 190, 225), "night": (25, 28, 45), "fog": (205, 205, 200), "rain": (105, 115, 125),
}
# Object colours and size ranges (w, h in pixels at 320x240).
_OBJECTS = {
    "car": ((40, 70, 200), (34, 60), (16, 26)),
    "person": ((210, 40, 40), (8, 14), (24, 40)),
    "bike": ((40, 170, 60), (20, 30), (12, 18)),
    "sign": ((235, 200, 20), (14, 24), (14, 24)),
}
_FIRST = ["Alice", "Bruno", "Chiara", "Dmitri", "Elif", "Farid", "Greta", "Hiro", "Ines", "Jonas"]
_LAST = ["Keller", "Novak", "Rossi", "Schmidt", "Tanaka", "Uysal", "Virtanen", "Weber", "Yilmaz"]
# Real photos that scikit-image ships in its wheel, with hand-made ground truth.
REAL_PHOTOS = {
    "astronaut": {"scene": "day", "objects": [("person", (0.0, 0.0, 512.0, 512.0))]},
    "coffee": {"scene": "day", "objects": []},
    "chelsea": {"scene": "day", "objects": []},
}


@dataclass
class SceneTruth:
    scene: str
    objects: list[tuple[str, tuple[float, float, float, float], bytes | None]]  # label, box, wkb


def _fake_person(rng: np.random.Generator) -> dict:
    first, last = rng.choice(_FIRST), rng.choice(_LAST)
    digits = "".join(str(d) for d in rng.integers(0, 10, 7))
    return {
        "name": f"{first} {last}",
        "email": f"{first.lower()}.{last.lower()}@example.com",
        "phone": f"+49 30 {digits}",
    }


def _sidecar(rng: np.random.Generator, date: str, index: int) -> dict:
    operator = _fake_person(rng)
    return {
        "capture": {"camera": f"dashcam-{int(rng.integers(1, 9))}", "timestamp": f"{date}T{index % 24:02d}:00:00Z"},
        "operator": operator,
        "location": {"address": f"{int(rng.integers(1, 200))} Hauptstrasse, Berlin",
                     "gps": [round(52.5 + rng.normal(0, 0.05), 6), round(13.4 + rng.normal(0, 0.05), 6)]},
        "device_ip": f"10.{int(rng.integers(0, 255))}.{int(rng.integers(0, 255))}.{int(rng.integers(1, 255))}",
        "customer": {"iban": "DE89 3704 0044 0532 0130 00", "card": "4111 1111 1111 1111",
                     "national_id": f"T{int(rng.integers(10**7, 10**8))}"},
        "notes": f"Recorded by {operator['name']}; call {operator['phone']} if the upload fails.",
    }


def render_scene(rng: np.random.Generator, size: tuple[int, int],
                 scene: str | None = None) -> tuple[Image.Image, SceneTruth]:
    """One synthetic street scene and its ground truth (boxes in pixels, signs as polygons);
    the scene is drawn at random unless given."""
    width, height = size
    scene = scene or str(rng.choice(SCENES))
    base = np.array(_SCENE_BACKGROUND[scene], dtype=np.float32)
    pixels = base + rng.normal(0, 6, (height, width, 3)).astype(np.float32)
    if scene == "rain":  # streaks make rain distinguishable from a dull day
        cols = rng.integers(0, width, width // 6)
        pixels[:, cols, :] += 40
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    placed: list[tuple[float, float, float, float]] = []
    objects = []
    for _ in range(int(rng.integers(1, 5))):
        label = str(rng.choice(list(_OBJECTS)))
        colour, (w_lo, w_hi), (h_lo, h_hi) = _OBJECTS[label]
        w, h = int(rng.integers(w_lo, w_hi + 1)), int(rng.integers(h_lo, h_hi + 1))
        for _attempt in range(20):  # rejection sampling: objects do not overlap
            x0, y0 = int(rng.integers(2, width - w - 2)), int(rng.integers(2, height - h - 2))
            box = (float(x0), float(y0), float(x0 + w), float(y0 + h))
            if all(box[2] <= p[0] or box[0] >= p[2] or box[3] <= p[1] or box[1] >= p[3] for p in placed):
                break
        else:
            continue
        placed.append(box)
        if label == "sign":
            triangle = [(x0 + w / 2, y0), (x0 + w, y0 + h), (x0, y0 + h)]
            draw.polygon(triangle, fill=colour)
            objects.append((label, box, shapely.to_wkb(shapely.Polygon(triangle))))
        elif label == "bike":
            draw.ellipse(box, fill=colour)
            objects.append((label, box, None))
        else:
            draw.rectangle((x0, y0, x0 + w - 1, y0 + h - 1), fill=colour)
            objects.append((label, box, None))
    return image, SceneTruth(scene, objects)


def png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def _jpeg_with_exif(image: Image.Image, person: dict, gps: list[float]) -> bytes:
    """A JPEG whose EXIF names the photographer and carries GPS, as phone photos do."""
    exif = Image.Exif()
    exif[0x013B] = person["name"]            # Artist
    exif[0x8298] = person["email"]           # Copyright (people put e-mails here)
    exif[0x010E] = f"Shot by {person['name']}"  # ImageDescription
    gps_ifd = {1: "N", 2: (52.0, 31.0, 12.0), 3: "E", 4: (13.0, 24.0, 36.0)}
    exif[0x8825] = gps_ifd
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=92, exif=exif)
    return buf.getvalue()


def _truth_rows(item_id: str, truth: SceneTruth) -> list[dict]:
    rows = [{"item_id": item_id, "kind": "choice", "label": truth.scene, "x_min": np.nan,
             "y_min": np.nan, "x_max": np.nan, "y_max": np.nan, "geometry_wkb": None}]
    for label, box, wkb in truth.objects:
        rows.append({"item_id": item_id, "kind": "polygon" if wkb is not None else "box",
                     "label": label, "x_min": box[0], "y_min": box[1], "x_max": box[2],
                     "y_max": box[3], "geometry_wkb": wkb})
    return rows


def _real_photo(name: str) -> Image.Image:
    from skimage import data as skdata  # imported lazily: only the generator needs it

    return Image.fromarray(getattr(skdata, name)())


@dataclass
class GeneratedPartition:
    landing_dir: Path
    n_files: int            # files written to the landing folder (incl. duplicates, broken)
    n_distinct_images: int  # distinct decodable images (what ingestion should accept)
    n_duplicates: int
    n_broken: int


def generate_partition(root: Path, date: str, n_images: int, seed: int = 0,
                       settings: dict | None = None) -> GeneratedPartition:
    """Write one day's landing folder. Same (date, n_images, seed) gives the same bytes."""
    settings = settings or load_sample_settings()
    size = tuple(settings["image_size"])
    rng = np.random.default_rng([seed, int(date.replace("-", ""))])
    landing = DataLayout(root).landing(date)
    landing.mkdir(parents=True, exist_ok=True)
    truth_rows: list[dict] = []
    written = 0
    distinct = 0

    def write(name: str, content: bytes, sidecar: dict | None) -> None:
        nonlocal written
        (landing / name).write_bytes(content)
        if sidecar is not None:
            (landing / f"{name}.json").write_text(json.dumps(sidecar, indent=1))
        written += 1

    for i in range(n_images):
        image, truth = render_scene(rng, size)
        sidecar = _sidecar(rng, date, i)
        # Every fifth synthetic image arrives as a phone-style JPEG with EXIF and GPS.
        if i % 5 == 4:
            content = _jpeg_with_exif(image, sidecar["operator"], sidecar["location"]["gps"])
            name = f"cam_{i:05d}.jpg"
        else:
            content = png_bytes(image)
            name = f"cam_{i:05d}.png"
        write(name, content, sidecar)
        truth_rows += _truth_rows(item_id_for_bytes(content), truth)
        distinct += 1
        every = settings.get("duplicate_every", 0)
        if every and i % every == every - 1:  # the same file uploaded twice under another name
            write(f"dup_of_{name}", content, sidecar)

    for name in settings.get("real_photos", []):
        sidecar = _sidecar(rng, date, 0)
        content = _jpeg_with_exif(_real_photo(name), sidecar["operator"], sidecar["location"]["gps"])
        write(f"photo_{name}.jpg", content, sidecar)
        spec = REAL_PHOTOS[name]
        truth_rows += _truth_rows(item_id_for_bytes(content),
                                  SceneTruth(spec["scene"], [(lbl, box, None) for lbl, box in spec["objects"]]))
        distinct += 1

    broken = 0
    for j in range(settings.get("corrupt_files", 0)):
        good = png_bytes(render_scene(rng, size)[0])
        write(f"broken_truncated_{j}.png", good[: len(good) // 3], None)  # upload cut off
        write(f"broken_empty_{j}.jpg", b"", None)                          # zero-byte upload
        broken += 2

    truth_dir = DataLayout(root).sample_truth
    truth_dir.mkdir(parents=True, exist_ok=True)
    truth = GOLD_LABELS.conform(pd.DataFrame(truth_rows))
    truth.to_parquet(truth_dir / f"truth-{date}.parquet", index=False)
    n_dups = written - distinct - broken
    return GeneratedPartition(landing, written, distinct, n_dups, broken)


def generate_gold_set(root: Path, n_items: int = 60, seed: int = 7,
                      settings: dict | None = None) -> Path:
    """The gold set: generated images with known answers, hidden among vendor tasks.

    Gold images carry no personal data (they are generated), so they need no anonymization.
    Written once; an existing gold set is left as it is (it must not change under a
    running program).
    """
    layout = DataLayout(root)
    gold_dir, labels_path = layout.gold, layout.gold_labels
    if labels_path.exists():
        return gold_dir
    settings = settings or load_sample_settings()
    rng = np.random.default_rng(seed)
    layout.gold_images.mkdir(parents=True, exist_ok=True)
    rows = []
    for _ in range(n_items):
        image, truth = render_scene(rng, tuple(settings["image_size"]))
        content = png_bytes(image)
        item_id = item_id_for_bytes(content)
        layout.gold_image(item_id).write_bytes(content)
        rows += _truth_rows(item_id, truth)
    write_parquet_atomic(GOLD_LABELS.conform(pd.DataFrame(rows)), labels_path)
    return gold_dir


def load_sample_settings(path: Path | None = None) -> dict:
    return json.loads((path or project_files().sample_settings).read_text())
