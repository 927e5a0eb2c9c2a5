"""Anonymization: face recall by size, false positives, plates and speed, beside deface.

Run: python benchmarks/bench_anonymize.py [--quick] [--seed S] [--repeats R]
Needs, for the anchor only: ``pip install --no-deps deface==1.5.0 imageio-ffmpeg onnx``
(deface's image path imports imageio's ffmpeg plugin; onnx lets deface pick its onnxruntime
backend, its fastest, as its README recommends).

In one process, on the same generated scenes (benchmarks/scenes_anonymize.py: faces pasted
onto scikit-image photos and generated streets, JPEG q85, own seed):

1. **Face recall by face size** (24-32, 32-48, 48-96, 96-160 px) for
   - ours: ``anonymize_image`` as the asset runs it (CenterFace at full resolution plus a
     half-resolution pass for large faces, thresholds from ``ImageSettings``, the 8-bit
     model), a face counts when >= 80 % of its box is obscured in the output; ``ours_fp32``
     is the same with deface's float weights; ``ours_one_pass`` without the half-resolution
     pass; ``ours_previous`` the operating point before it (one pass, 0.1 at every size,
     boxes padded 0.2);
   - deface 1.5.0's own pipeline at its default settings (``CenterFace(in_shape=None,
     backend='auto')``, threshold 0.2, mask scale 1.3), same criterion on its masks;
   - the previous detector (Haar ``frontalface_alt2`` on a 360 px grey copy, scaleFactor
     1.25, minNeighbors 1, boxes padded 0.2), for the record.
2. **Non-face patches blurred:** 100 LFW non-face crops and 100 cuts of photos pasted the same
   way; a patch counts as blurred when >= 50 % of it is covered.
3. **CPU time per image** of the whole image path (decode, detect, obscure, encode, write):
   ours vs deface's (imageio decode, CenterFace, ellipse blur, imageio write), alternated
   ``--repeats`` times on the same scenes, and the cost of the small-face band: our detector
   at full resolution vs at half resolution (what it would cost to find only faces >= 48 px),
   and with and without the half-resolution pass for large faces.
4. **Throughput** of ``anonymize_items`` (2 workers, the machine's 2 cores) on 640x480
   phone-style JPEGs with EXIF and sidecars, beside deface's image path on the same files.
5. **Plates:** recall on rendered plates by width and angle, and plate boxes per face-free
   scene, for the Haar plate cascade at our settings and at full resolution.

Timing figures are ratios measured in the same run: the machine is shared.
``--extra-seeds S ...`` repeats the recall table (ours and deface only) on other scenes.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from annotation_pipeline.anonymization import face_detection  # noqa: E402
from annotation_pipeline.anonymization.image import (  # noqa: E402
    PLATE_CASCADE, PLATE_WINDOW, ImageSettings, anonymize_image, detect_boxes, pad_boxes)
from annotation_pipeline.anonymization.items import anonymize_items as anonymize_split  # noqa: E402
from annotation_pipeline.contracts import LANDING_ORIGINALS, RAW_ITEMS  # noqa: E402
from scenes_anonymize import (  # noqa: E402
    FACE_BANDS, PLATE_ANGLES, PLATE_WIDTHS, Scene, coverage, face_scenes, non_face_scenes, plate_scenes)

SECRET = b"benchmark-secret-0123456789abcdef0123"
DATE = "2026-11-30"
FOUND = 0.8      # a face is found when this share of its box is obscured
BLURRED = 0.5    # a non-face patch is blurred when this share of it is covered
TARGET_IMG_S = 20.0


# --------------------------------------------------------------------------------------------
# The three detectors, each returning the boxes it would obscure
# --------------------------------------------------------------------------------------------

def ours_boxes(scene: Scene, settings: ImageSettings) -> np.ndarray:
    result = anonymize_image(scene.jpeg, "scene.jpg", settings)
    return np.array([r.box for r in result.redactions if r.kind == "face"]).reshape(-1, 4)


class Deface:
    """deface 1.5.0's image path at its CLI defaults (deface.deface.image_detect, minus the CLI)."""

    THRESHOLD, MASK_SCALE = 0.2, 1.3

    def __init__(self) -> None:
        import imageio.v2 as iio
        from deface import __version__
        from deface.centerface import CenterFace
        from deface.deface import anonymize_frame, scale_bb

        self.iio, self.version = iio, __version__
        self.anonymize_frame, self.scale_bb = anonymize_frame, scale_bb
        self.centerface = CenterFace(in_shape=None, backend="auto")

    def masks(self, frame: np.ndarray) -> np.ndarray:
        dets, _ = self.centerface(frame, threshold=self.THRESHOLD)
        out = []
        for det in dets:  # anonymize_frame's own box arithmetic
            x1, y1, x2, y2 = self.scale_bb(*det[:4].astype(int), self.MASK_SCALE)
            out.append((max(0, x1), max(0, y1), min(frame.shape[1] - 1, x2), min(frame.shape[0] - 1, y2)))
        return np.asarray(out, dtype=np.float64).reshape(-1, 4)

    def boxes(self, scene: Scene) -> np.ndarray:
        return self.masks(self.iio.imread(io.BytesIO(scene.jpeg)))

    def image_path(self, source: str, target: str) -> None:
        """deface's image_detect: read, detect, blur (ellipse), write."""
        frame = self.iio.imread(source)
        dets, _ = self.centerface(frame, threshold=self.THRESHOLD)
        self.anonymize_frame(dets, frame, mask_scale=self.MASK_SCALE, replacewith="blur", ellipse=True,
                             draw_scores=False, replaceimg=None, mosaicsize=20)
        self.iio.imsave(target, frame)


def haar_boxes(scene: Scene) -> np.ndarray:
    rgb = np.asarray(Image.open(io.BytesIO(scene.jpeg)).convert("RGB"))
    settings = ImageSettings()
    boxes = detect_boxes(rgb, "haarcascade_frontalface_alt2.xml", settings, (20, 20))
    return pad_boxes(boxes, 0.2, rgb.shape[1], rgb.shape[0])


def score(scenes: list[Scene], boxes: list[np.ndarray], share: float) -> tuple[np.ndarray, np.ndarray]:
    """Per ground-truth box: hit or not, and its source name."""
    hits, names = [], []
    for scene, found in zip(scenes, boxes):
        for box, name in zip(scene.boxes, scene.source):
            hits.append(coverage(box, found, (480, 640)) >= share)
            names.append(name)
    return np.array(hits), np.array(names)


# --------------------------------------------------------------------------------------------
# 1 + 2: recall and false positives
# --------------------------------------------------------------------------------------------

def variants(settings: ImageSettings) -> dict[str, ImageSettings]:
    """Our operating point and the variants that say what each of its parts buys."""
    return {
        "ours": settings,
        "ours_one_pass": replace(settings, face_coarse_scale=None),
        "ours_previous": replace(settings, face_coarse_scale=None, face_large_threshold=settings.face_threshold,
                                 pad_fraction=0.2),
        "ours_fp32": replace(settings, face_model="fp32"),
        # the operating point before issue #22: the half-resolution pass on the 8-bit model
        "ours_int8_coarse": replace(settings, face_coarse_model="int8"),
        # half of 640, one pass: what finding only faces >= 48 px would cost and find
        "ours_half_resolution": replace(settings, face_max_side=320, face_coarse_scale=None),
    }


def recall_table(seed: int, per_source: int, deface: Deface, settings: ImageSettings, quick: bool,
                 only: tuple[str, ...] | None = None) -> pd.DataFrame:
    rows = []
    detectors = {name: (lambda s, v=v: ours_boxes(s, v)) for name, v in variants(settings).items()}
    detectors.update({"deface": deface.boxes, "haar_360_previous": haar_boxes})
    if only is not None:
        detectors = {name: detectors[name] for name in only}
    for i, band in enumerate(FACE_BANDS):
        scenes = face_scenes(seed + i, band, per_source)
        if quick:
            scenes = scenes[::3]
        row = {"band": f"{band[0]}-{band[1]}"}
        for name, detect in detectors.items():
            hits, names = score(scenes, [detect(s) for s in scenes], FOUND)
            lfw = np.char.startswith(names.astype(str), "lfw")
            row.update({f"{name}": hits.mean(), f"{name}_lfw": hits[lfw].mean(), f"{name}_colour": hits[~lfw].mean()})
            row["faces"] = len(hits)
        rows.append(row)
        print(f"  band {row['band']}: " + ", ".join(f"{k} {row[k]:.3f}" for k in detectors), flush=True)
    scenes = non_face_scenes(seed + 99)
    row = {"band": "non-face patches (share blurred)"}
    for name, detect in detectors.items():
        hits, _ = score(scenes, [detect(s) for s in scenes], BLURRED)
        row[name] = hits.mean()
        row["faces"] = len(hits)
    rows.append(row)
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------
# 3 + 4: time
# --------------------------------------------------------------------------------------------

def cpu_per_image(scenes: list[Scene], deface: Deface, settings: ImageSettings, repeats: int) -> dict[str, list[float]]:
    """CPU ms per image of each whole image path, alternated so both see the same machine."""
    half = replace(settings, face_max_side=320, face_coarse_scale=None)
    times: dict[str, list[float]] = {"ours": [], "deface": [], "ours_detect_full": [], "ours_detect_half": [],
                                     "ours_detect_full_fp32": [], "ours_detect_one_pass": [],
                                     "ours_detect_int8_coarse": []}
    rgbs = [np.asarray(Image.open(io.BytesIO(s.jpeg)).convert("RGB")) for s in scenes]
    with tempfile.TemporaryDirectory(prefix="faces-bench-") as tmp:
        sources = []
        for k, scene in enumerate(scenes):
            sources.append(os.path.join(tmp, f"in{k}.jpg"))
            Path(sources[-1]).write_bytes(scene.jpeg)

        def ours() -> None:
            for k, source in enumerate(sources):
                result = anonymize_image(Path(source).read_bytes(), source, settings)
                Path(tmp, f"ours{k}{result.suffix}").write_bytes(result.data)

        def theirs() -> None:
            for k, source in enumerate(sources):
                deface.image_path(source, os.path.join(tmp, f"deface{k}.jpg"))

        def detect(s: ImageSettings):
            def run() -> None:
                for rgb in rgbs:
                    face_detection.detect_faces(rgb, s.face_threshold, min(1.0, s.face_max_side / max(rgb.shape[:2])),
                                                s.face_model, s.face_large_threshold, coarse=s.face_coarse_scale,
                                                coarse_model=s.face_coarse_model)
            return run

        runs = {"ours": ours, "deface": theirs, "ours_detect_full": detect(settings), "ours_detect_half": detect(half),
                "ours_detect_full_fp32": detect(replace(settings, face_model="fp32")),
                "ours_detect_one_pass": detect(replace(settings, face_coarse_scale=None)),
                "ours_detect_int8_coarse": detect(replace(settings, face_coarse_model="int8"))}
        for fn in runs.values():
            fn()  # warm-up: first-call costs and first touch of memory
        for _ in range(repeats):
            for name, fn in runs.items():
                cpu = time.process_time()
                fn()
                times[name].append((time.process_time() - cpu) / len(scenes) * 1000)
    return times


def write_partition(root: Path, scenes: list[Scene]) -> pd.DataFrame:
    rows = []
    for i, scene in enumerate(scenes):
        image = Image.open(io.BytesIO(scene.jpeg))
        exif = Image.Exif()
        exif[0x013B] = "Benchmark Photographer"
        exif[0x8825] = {1: "N", 2: (52.0, 31.0, 12.0), 3: "E", 4: (13.0, 24.0, 36.0)}
        buf = io.BytesIO()
        image.save(buf, "JPEG", quality=85, exif=exif)
        content = buf.getvalue()
        raw_path = f"raw/{DATE}/img_{i:05d}.jpg"
        (root / raw_path).parent.mkdir(parents=True, exist_ok=True)
        (root / raw_path).write_bytes(content)
        meta = json.dumps({"operator": {"name": f"Operator Number{i % 7}", "email": f"op{i % 7}@example.com"},
                           "notes": f"Recorded by Operator Number{i % 7}; call +49 30 1234567."})
        rows.append({"item_id": hashlib.sha256(content).hexdigest()[:16], "partition_date": DATE,
                     "source_file": Path(raw_path).name, "raw_path": raw_path, "media_type": "image/jpeg",
                     "width": 640, "height": 480, "byte_size": len(content), "metadata_json": meta,
                     "caption": json.loads(meta)["notes"]})
    return pd.DataFrame(rows)  # RAW_ITEMS columns plus the restricted originals, split by anonymize_items below


def anonymize_items(raw: pd.DataFrame, root: Path, out_dir: str, **options):
    """Split a partition as ingestion stores it (pseudonymous raw_items, restricted originals), then anonymize."""
    originals = raw.assign(entry="landing_" + raw["item_id"], outcome="accepted")
    return anonymize_split(RAW_ITEMS.conform(raw), LANDING_ORIGINALS.conform(originals), root, out_dir, **options)


def throughput(scenes: list[Scene], deface: Deface, settings: ImageSettings, repeats: int) -> list[dict[str, float]]:
    out = []
    with tempfile.TemporaryDirectory(prefix="faces-bench-") as tmp:
        root = Path(tmp)
        raw = write_partition(root, scenes)
        anonymize_items(raw, root, "warmup", secret=SECRET, settings=settings, workers=2)
        for r in range(repeats):
            wall, cpu = time.perf_counter(), time.process_time()
            result = anonymize_items(raw, root, f"run{r}", secret=SECRET, settings=settings, workers=2)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            assert result.accepted == len(scenes), result.quarantine
            d_wall, d_cpu = time.perf_counter(), time.process_time()
            for i, source in enumerate(raw["raw_path"]):
                deface.image_path(str(root / source), str(root / f"deface{r}_{i}.jpg"))
            d_wall, d_cpu = time.perf_counter() - d_wall, time.process_time() - d_cpu
            n = len(scenes)
            out.append({"ours_img_s": n / wall, "ours_cpu_ms": cpu / n * 1000, "deface_img_s": n / d_wall,
                        "deface_cpu_ms": d_cpu / n * 1000, "load": os.getloadavg()[0]})
            print(f"  run {r}: ours {n / wall:.1f} img/s wall, {cpu / n * 1000:.1f} CPU ms/img; deface "
                  f"{n / d_wall:.1f} img/s wall, {d_cpu / n * 1000:.1f} CPU ms/img; load {os.getloadavg()[0]:.1f}",
                  flush=True)
    return out


# --------------------------------------------------------------------------------------------
# 5: plates
# --------------------------------------------------------------------------------------------

PLATE_DETECTORS = {
    "haar_360_ours": ImageSettings(),
    "haar_full_res_1.25_1": ImageSettings(detect_max_side=100_000),
    "haar_full_res_1.1_3": ImageSettings(detect_max_side=100_000, scale_factor=1.1, min_neighbors=3),
}


def plate_boxes(scene: Scene, settings: ImageSettings) -> np.ndarray:
    rgb = np.asarray(Image.open(io.BytesIO(scene.jpeg)).convert("RGB"))
    return pad_boxes(detect_boxes(rgb, PLATE_CASCADE, settings, PLATE_WINDOW), settings.pad_fraction, 640, 480)


def plate_table(seed: int, n: int, face_free: list[Scene]) -> pd.DataFrame:
    rows = []
    for i, widths in enumerate(PLATE_WIDTHS):
        for j, angle in enumerate(PLATE_ANGLES):
            scenes = plate_scenes(seed + 10 * i + j, widths, angle, n)
            row = {"width px": f"{widths[0]}-{widths[1]}", "angle": f"±{angle:g}°", "plates": len(scenes)}
            for name, settings in PLATE_DETECTORS.items():
                hits, _ = score(scenes, [plate_boxes(s, settings) for s in scenes], FOUND)
                row[name] = hits.mean()
            rows.append(row)
    row = {"width px": "boxes per face-free scene", "angle": "", "plates": len(face_free)}
    for name, settings in PLATE_DETECTORS.items():
        cpu = time.process_time()
        row[name] = float(np.mean([len(plate_boxes(s, settings)) for s in face_free]))
        row[f"{name}_cpu_ms"] = (time.process_time() - cpu) / len(face_free) * 1000
    rows.append(row)
    return pd.DataFrame(rows)


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.1f} (runs {', '.join(f'{v:.1f}' for v in values)})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a third of the scenes, one repeat (smoke run)")
    parser.add_argument("--seed", type=int, default=1300)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--extra-seeds", type=int, nargs="*", default=[],
                        help="more scene seeds for the recall table, ours and deface only")
    args = parser.parse_args()
    repeats = 1 if args.quick else args.repeats
    settings = ImageSettings()
    cv2.setNumThreads(1)  # as in the asset's workers; deface keeps onnxruntime's own threads
    deface = Deface()
    import onnxruntime

    print(f"machine: {os.cpu_count()} cores, load average at start {os.getloadavg()[0]:.2f}; OpenCV {cv2.__version__}, "
          f"onnxruntime {onnxruntime.__version__}; deface {deface.version} backend {deface.centerface.backend}")
    print(f"ours: {face_detection.detector_version(settings.face_model)}, threshold {settings.face_threshold} "
          f"({settings.face_large_threshold} from {face_detection.LARGE_SIDE} px), second pass at "
          f"{settings.face_coarse_scale} ({settings.face_coarse_model}), face_max_side {settings.face_max_side}, "
          f"pad {settings.pad_fraction}")

    print("\n1-2. face recall by face size (found: >= 80 % of the face box obscured), and non-face patches blurred")
    table = recall_table(args.seed, 1, deface, settings, args.quick)
    print(table.to_markdown(index=False, floatfmt=".3f"))
    for seed in args.extra_seeds:
        print(f"\n   the same on the scenes of seed {seed}, ours and deface")
        print(recall_table(seed, 1, deface, settings, args.quick, ("ours", "deface")).to_markdown(
            index=False, floatfmt=".3f"))

    print("\n3. CPU ms per 640x480 image, whole image path, alternated on the same scenes")
    timing_scenes = face_scenes(args.seed + 50, (24, 96))[: 12 if args.quick else 40]
    times = cpu_per_image(timing_scenes, deface, settings, repeats)
    for name, values in times.items():
        print(f"  {name:<18} {spread(values)}")
    ratios = [d / o for d, o in zip(times["deface"], times["ours"])]
    band = [f - h for f, h in zip(times["ours_detect_full"], times["ours_detect_half"])]
    coarse = [f - o for f, o in zip(times["ours_detect_full"], times["ours_detect_one_pass"])]
    print(f"  deface / ours CPU per image: {spread(ratios)}; small-face band (full minus half-resolution "
          f"detection): {spread(band)} ms; the half-resolution pass for large faces: {spread(coarse)} ms")

    print("\n4. throughput, anonymize_items with 2 workers vs deface's image path, 640x480, same files")
    runs = throughput(timing_scenes, deface, settings, repeats)
    ours_rate = [r["ours_img_s"] for r in runs]
    ceiling = [2 * 1000 / r["ours_cpu_ms"] for r in runs]
    print(f"  ours img/s (wall): {spread(ours_rate)}; 2-core ceiling from CPU time: {spread(ceiling)} "
          f"(target {TARGET_IMG_S:.0f})")
    print(f"  deface img/s (wall): {spread([r['deface_img_s'] for r in runs])}; "
          f"ours/deface wall: {spread([r['ours_img_s'] / r['deface_img_s'] for r in runs])}")

    print("\n5. plates: recall (>= 80 % of the plate obscured) by width and angle; false boxes on face-free scenes")
    print(plate_table(args.seed + 500, 12 if args.quick else 40, non_face_scenes(args.seed + 98)).to_markdown(
        index=False, floatfmt=".3f"))
    print(f"\nload average at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
