"""Anonymization throughput and face recall, beside the Haar default-parameter anchor.

Run: python benchmarks/bench_anonymize.py [--quick]

Measures, in one process on identical data:

1. the anchor (/work/shared/anchors/haar_faces.py): OpenCV's frontal-face Haar cascade with
   default parameters (scaleFactor 1.1, minNeighbors 5, minSize 24) on the 512x512 astronaut,
   ms per image, just before and just after each of our runs; and the same anchor detector
   on our benchmark scenes (full resolution), ms per image;
2. our full path, ``anonymize_items`` on a partition of phone-style JPEGs with EXIF+GPS and
   sidecar metadata on disk: decode, EXIF orientation, face + plate detection, pixelation,
   re-encode (JPEG q95 for these JPEG uploads), write, metadata policy + detectors; images per second at 640x480 and
   1280x720, with 2 workers (the machine has 2 cores) and with 1;
3. face recall on a shipped face set: the 100 face crops of ``skimage.data.lfw_subset()``
   plus the astronaut's face, pasted at random positions into generated street scenes with
   known boxes, once per face-size bucket (24-32, 32-40, 40-80, 80-160 px). A face counts as found when at least 80 % of its box is
   obscured in the output (what matters for privacy). Same set through the anchor detector
   (IoU >= 0.3 with a detection) for comparison. False positives: detections on the 100
   non-face crops of lfw_subset pasted the same way.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from PIL import Image
from skimage import data as skdata

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from annotation_pipeline.anonymization.image import ImageSettings  # noqa: E402
from annotation_pipeline.anonymization.items import anonymize_items as anonymize_split  # noqa: E402
from annotation_pipeline.anonymization.items import default_policy  # noqa: E402
from annotation_pipeline.contracts import LANDING_ORIGINALS, RAW_ITEMS  # noqa: E402
from annotation_pipeline.sample_world.sample_data import render_scene  # noqa: E402

SECRET = b"benchmark-secret-0123456789abcdef0123"
DATE = "2026-11-22"
ASTRONAUT_FACE = (160, 50, 130, 130)  # x, y, w, h: a loose crop around the face


ANCHOR_CASCADE = "haarcascade_frontalface_default.xml"  # the anchor's, whatever ours is
ANCHOR_QUOTED_MS = 293.0  # /work/shared/anchors/README.md: ms per 512x512 astronaut
TARGET_IMG_S = 20.0       # issue: >= 20 images/s at 640x480 on this 2-core machine
FACE_SIZES = ((24, 32), (32, 40), (40, 80), (80, 160))  # recall is reported per face-size bucket


def anchor_detector() -> cv2.CascadeClassifier:
    return cv2.CascadeClassifier(os.path.join(cv2.data.haarcascades, ANCHOR_CASCADE))


def anchor_detect(casc: cv2.CascadeClassifier, rgb: np.ndarray) -> np.ndarray:
    """The anchor's call, verbatim: default parameters on the full-resolution grey image."""
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    return casc.detectMultiScale(gray, 1.1, 5, minSize=(24, 24))


def face_crops() -> list[np.ndarray]:
    lfw = skdata.lfw_subset()  # 200 x 25 x 25 floats: 100 faces then 100 non-faces
    faces = [(f * 255).astype(np.uint8) for f in lfw[:100]]
    x, y, w, h = ASTRONAUT_FACE
    faces.append(cv2.cvtColor(skdata.astronaut()[y:y + h, x:x + w], cv2.COLOR_RGB2GRAY))
    return faces


def non_face_crops() -> list[np.ndarray]:
    return [(f * 255).astype(np.uint8) for f in skdata.lfw_subset()[100:]]


def scene_with_crops(rng: np.random.Generator, size: tuple[int, int], crops: list[np.ndarray],
                     sizes: tuple[int, int]) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    """A generated street scene with grey crops pasted (as RGB) at non-overlapping random places."""
    width, height = size
    image = np.asarray(render_scene(rng, size)[0]).copy()
    boxes: list[tuple[int, int, int, int]] = []
    for crop in crops:
        side = int(rng.integers(sizes[0], min(sizes[1], height // 2) + 1))
        for _ in range(50):
            x, y = int(rng.integers(0, width - side)), int(rng.integers(0, height - side))
            if all(x + side <= bx or x >= bx2 or y + side <= by or y >= by2 for bx, by, bx2, by2 in boxes):
                break
        else:
            continue
        patch = cv2.resize(crop, (side, side), interpolation=cv2.INTER_CUBIC)
        image[y:y + side, x:x + side] = patch[:, :, None]
        boxes.append((x, y, x + side, y + side))
    return image, boxes


def jpeg_with_exif(rgb: np.ndarray) -> bytes:
    exif = Image.Exif()
    exif[0x013B] = "Benchmark Photographer"
    exif[0x8825] = {1: "N", 2: (52.0, 31.0, 12.0), 3: "E", 4: (13.0, 24.0, 36.0)}
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=90, exif=exif)
    return buf.getvalue()


def sidecar(i: int) -> str:
    return json.dumps({
        "capture": {"camera": f"dashcam-{i % 8}", "timestamp": f"{DATE}T{i % 24:02d}:00:00Z"},
        "operator": {"name": f"Operator Number{i % 7}", "email": f"op{i % 7}@example.com", "phone": "+49 30 1234567"},
        "location": {"address": f"{i} Hauptstrasse, Berlin", "gps": [52.5, 13.4]},
        "device_ip": f"10.0.{i % 255}.{1 + i % 250}",
        "customer": {"iban": "DE89 3704 0044 0532 0130 00", "card": "4111 1111 1111 1111", "national_id": "T1234567"},
        "notes": f"Recorded by Operator Number{i % 7}; call +49 30 1234567 if the upload fails.",
    })


def write_partition(root: Path, images: list[np.ndarray]) -> pd.DataFrame:
    rows = []
    for i, rgb in enumerate(images):
        content = jpeg_with_exif(rgb)
        raw_path = f"raw/{DATE}/img_{i:05d}.jpg"
        (root / raw_path).parent.mkdir(parents=True, exist_ok=True)
        (root / raw_path).write_bytes(content)
        meta = sidecar(i)
        rows.append({"item_id": hashlib.sha256(content).hexdigest()[:16], "partition_date": DATE,
                     "source_file": Path(raw_path).name, "raw_path": raw_path, "media_type": "image/jpeg",
                     "width": rgb.shape[1], "height": rgb.shape[0], "byte_size": len(content),
                     "metadata_json": meta, "caption": json.loads(meta)["notes"]})
    return pd.DataFrame(rows)  # RAW_ITEMS columns plus the restricted originals, split by anonymize_items below


def anonymize_items(raw: pd.DataFrame, root: Path, out_dir: str, **options):
    """Split a partition as ingestion stores it (pseudonymous raw_items, restricted originals), then anonymize."""
    originals = raw.assign(entry="landing_" + raw["item_id"], outcome="accepted")
    return anonymize_split(RAW_ITEMS.conform(raw), LANDING_ORIGINALS.conform(originals), root, out_dir, **options)


def anchor_ms_per_image() -> float:
    """The anchor's figure: ms per 512x512 astronaut, default parameters (10 calls after one)."""
    casc = anchor_detector()
    img = skdata.astronaut()
    anchor_detect(casc, img)
    t = time.perf_counter()
    for _ in range(10):
        anchor_detect(casc, img)
    return (time.perf_counter() - t) / 10 * 1000


def throughput(size: tuple[int, int], n: int, settings: ImageSettings, workers: int,
               faces: list[np.ndarray]) -> dict[str, float]:
    """Wall-clock and CPU cost of anonymize_items on n scenes, and of the anchor on the same scenes.

    CPU time (all threads of this process) is reported beside wall time because the machine
    is shared: wall time includes waiting for other processes, CPU time does not.
    """
    rng = np.random.default_rng(size[0])
    images = [scene_with_crops(rng, size, [faces[int(k)] for k in rng.integers(0, len(faces), 2)], (48, 140))[0]
              for _ in range(n)]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        raw = write_partition(root, images)
        # Warm-up on the whole partition, untimed: first-call costs, and this VM's first touch of
        # memory it never used before (256 MB took 527 ms the first time, 20 ms after), which
        # otherwise lands on whichever run comes first.
        anonymize_items(raw, root, "warmup", secret=SECRET, settings=settings, workers=workers)
        wall, cpu = time.perf_counter(), time.process_time()
        result = anonymize_items(raw, root, "anonymized", secret=SECRET, policy=default_policy(),
                                 settings=settings, workers=workers)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        assert result.accepted == n, result.quarantine
    casc = anchor_detector()
    sample = images[: max(3, n // 4)]
    anchor_wall, anchor_cpu = time.perf_counter(), time.process_time()
    for rgb in sample:
        anchor_detect(casc, rgb)
    anchor_wall, anchor_cpu = time.perf_counter() - anchor_wall, time.process_time() - anchor_cpu
    return {"img_s": n / wall, "ms": wall / n * 1000, "cpu_ms": cpu / n * 1000,
            "anchor_ms": anchor_wall / len(sample) * 1000, "anchor_cpu_ms": anchor_cpu / len(sample) * 1000,
            "faces": int((result.redaction_log["kind"] == "face").sum())}


def coverage(box: tuple[int, int, int, int], regions: np.ndarray, shape: tuple[int, int]) -> float:
    mask = np.zeros(shape, dtype=bool)
    for x0, y0, x1, y1 in np.asarray(regions, dtype=np.int64).reshape(-1, 4):
        mask[y0:y1, x0:x1] = True
    x0, y0, x1, y1 = box
    return float(mask[y0:y1, x0:x1].mean())


def iou(a: tuple[int, int, int, int], b: np.ndarray) -> np.ndarray:
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    ix = np.clip(np.minimum(a[2], b[:, 2]) - np.maximum(a[0], b[:, 0]), 0, None)
    iy = np.clip(np.minimum(a[3], b[:, 3]) - np.maximum(a[1], b[:, 1]), 0, None)
    inter = ix * iy
    area = (a[2] - a[0]) * (a[3] - a[1]) + (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]) - inter
    return inter / area


def recall(settings: ImageSettings, size: tuple[int, int] = (640, 480), per_image: int = 2,
           crops: list[np.ndarray] | None = None, seed: int = 11,
           face_sizes: tuple[int, int] = (40, 160)) -> dict[str, float]:
    """Face recall of our path and of the anchor on pasted crops with known boxes."""
    crops = crops if crops is not None else face_crops()
    rng = np.random.default_rng(seed)
    scenes = [scene_with_crops(rng, size, crops[i:i + per_image], face_sizes) for i in range(0, len(crops), per_image)]
    casc = anchor_detector()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        raw = write_partition(root, [img for img, _ in scenes])
        result = anonymize_items(raw, root, "anonymized", secret=SECRET, settings=settings)
        log = result.redaction_log[result.redaction_log["kind"] == "face"]
        found = anchor_found = total = ours_boxes = anchor_boxes = 0
        for item_id, (img, boxes) in zip(raw["item_id"], scenes):
            regions = log.loc[log["item_id"] == item_id, ["x_min", "y_min", "x_max", "y_max"]].to_numpy()
            ours_boxes += len(regions)
            detections = anchor_detect(casc, img)
            det = np.array([[x, y, x + w, y + h] for x, y, w, h in detections]).reshape(-1, 4)
            anchor_boxes += len(det)
            for box in boxes:
                total += 1
                found += coverage(box, regions, img.shape[:2]) >= 0.8
                anchor_found += bool(len(det)) and bool((iou(box, det) >= 0.3).any())
    return {"faces": total, "recall": found / total, "anchor_recall": anchor_found / total,
            "boxes_per_image": ours_boxes / len(scenes), "anchor_boxes_per_image": anchor_boxes / len(scenes)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer images (smoke run)")
    args = parser.parse_args()
    n_vga, n_hd = (10, 4) if args.quick else (60, 24)
    settings = ImageSettings()
    print(f"machine: {os.cpu_count()} cores, load average at start {os.getloadavg()[0]:.2f}; "
          f"OpenCV {cv2.__version__}; settings: {settings}")

    faces = face_crops()
    cores = os.cpu_count() or 1
    print("\nthroughput of anonymize_items (JPEG+EXIF in, JPEG q95 out (no metadata), metadata policy, 2 faces/img),")
    print("with the anchor (Haar default parameters on the 512x512 astronaut) timed just before and")
    print("just after each run: ratio = our img/s x the anchor's seconds per image (mean of the two).")
    print(f"Target: {TARGET_IMG_S:.0f} img/s at the quoted {ANCHOR_QUOTED_MS:.0f} ms = ratio "
          f"{TARGET_IMG_S * ANCHOR_QUOTED_MS / 1000:.2f}")
    print(f"(idle ceiling = {cores} cores x 1000 / CPU ms per image: the rate with no other load)")
    print("| size | workers | images | ours img/s (wall) | ours CPU ms/img | ours idle ceiling img/s | "
          "anchor astronaut ms/img (before, after) | ratio | anchor detection-only on our scenes ms/img "
          "(wall) | CPU ratio anchor/ours |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for size, n in (((640, 480), n_vga), ((1280, 720), n_hd)):
        for workers in (2, 1):
            before = anchor_ms_per_image()
            r = throughput(size, n, settings, workers, faces)
            after = anchor_ms_per_image()
            anchor_s = (before + after) / 2000
            print(f"| {size[0]}x{size[1]} | {workers} | {n} | {r['img_s']:.1f} | {r['cpu_ms']:.1f} | "
                  f"{cores * 1000 / r['cpu_ms']:.1f} | {before:.1f}, {after:.1f} | **{r['img_s'] * anchor_s:.2f}** | "
                  f"{r['anchor_ms']:.1f} | {r['anchor_cpu_ms'] / r['cpu_ms']:.2f}x |", flush=True)

    print("\nface recall by face size (lfw_subset 100 faces + astronaut face, 2 per 640x480 scene;")
    print("ours: >= 80 % of the face box obscured in the output; anchor: a detection with IoU >= 0.3):")
    print("| face size px | faces | ours recall | anchor recall | ours face boxes/img | anchor boxes/img |")
    print("|---|---|---|---|---|---|")
    for sizes in FACE_SIZES:
        r = recall(settings, face_sizes=sizes)
        print(f"| {sizes[0]}-{sizes[1]} | {r['faces']} | {r['recall']:.3f} | {r['anchor_recall']:.3f} | "
              f"{r['boxes_per_image']:.2f} | {r['anchor_boxes_per_image']:.2f} |", flush=True)
    fp = recall(settings, crops=non_face_crops(), seed=12)
    print(f"false positives on 100 lfw non-face crops (40-160 px): ours {fp['boxes_per_image']:.2f} face "
          f"boxes/img, anchor {fp['anchor_boxes_per_image']:.2f} boxes/img")
    print(f"load average at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
