"""A team's own model behind a Label Studio ML backend: the seam, against a real HTTP server in the test."""

from __future__ import annotations

import base64
import io
import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from annotation_pipeline.contracts import PRELABELS, QUARANTINE
from annotation_pipeline.defs.prelabel import prelabels
from annotation_pipeline.defs.prelabel_service import (
    BuiltinPrelabelModel,
    LabelStudioMLBackend,
    PrelabelServiceError,
    build_prelabel_service,
)
from annotation_pipeline.defs.resources import DataRoot, build_resources
from annotation_pipeline.layout import DataLayout
from annotation_pipeline.settings import SettingsError, load_settings
from annotation_pipeline_tests.prelabel.day_items import DAY, anonymized_items_asset, save_day_images

CLASSES = {"day", "night", "fog", "rain", "car", "person", "bike", "sign"}
Answer = Callable[[dict], tuple[int, bytes]]


class _Backend:
    """A loopback ML backend whose answer the test chooses; it records the requests it got."""

    def __init__(self, answer: Answer, delay_s: float = 0.0):
        self.answer, self.delay_s, self.requests = answer, delay_s, []
        backend = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                backend.requests.append((self.path, dict(self.headers), body))
                time.sleep(backend.delay_s)
                status, payload = backend.answer(body)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                try:
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up waiting
                    pass

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True  # closing does not wait for a deliberately slow answer
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def serve():
    started = []

    def start(answer: Answer, delay_s: float = 0.0) -> _Backend:
        started.append(_Backend(answer, delay_s))
        return started[-1]

    yield start
    for backend in started:
        backend.close()


def _detector(body: dict) -> tuple[int, bytes]:
    """What label_studio_ml answers: one prediction per task, boxes in percent, a model version."""
    results = []
    for task in body["tasks"]:
        png = base64.b64decode(task["data"]["image"].split(",", 1)[1])
        width, height = Image.open(io.BytesIO(png)).size
        results.append({"model_version": "team-yolo-7", "score": 0.8, "result": [
            {"from_name": "scene", "to_name": "image", "type": "choices", "value": {"choices": ["fog"]}, "score": 0.9},
            {"from_name": "objects", "to_name": "image", "type": "rectanglelabels", "original_width": width,
             "original_height": height, "score": 0.75,
             "value": {"x": 10, "y": 20, "width": 25, "height": 50, "rotation": 0, "rectanglelabels": ["car"]}},
        ]})
    return 200, json.dumps({"results": results, "model_version": "team-yolo-7"}).encode()


def _images(n: int = 2, size: tuple[int, int] = (200, 100)) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {f"item{k}": rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8) for k in range(n)}


def test_the_backend_gets_one_task_per_image_and_its_boxes_come_back_in_pixels(serve):
    backend = serve(_detector)
    batch = LabelStudioMLBackend(url=backend.url, token="t0k").predict(_images(), CLASSES, DAY)
    path, headers, body = backend.requests[0]
    assert path == "/predict" and headers["Authorization"] == "Token t0k"
    assert [t["id"] for t in body["tasks"]] == ["item0", "item1"]
    PRELABELS.validate(batch.prelabels)
    assert batch.quarantined.empty and batch.model_version == "team-yolo-7"
    assert (batch.prelabels["model_version"] == "team-yolo-7").all()
    box = batch.prelabels[batch.prelabels["kind"] == "box"].iloc[0]
    # 10 %, 20 %, 25 % x 50 % of a 200 x 100 image
    assert (box["x_min"], box["y_min"], box["x_max"], box["y_max"]) == (20.0, 20.0, 70.0, 70.0)
    assert box["label"] == "car" and box["score"] == 0.75
    scene = batch.prelabels[batch.prelabels["kind"] == "choice"]
    assert scene["label"].tolist() == ["fog", "fog"] and scene["score"].tolist() == [0.9, 0.9]


def _one_bad_item(body: dict) -> tuple[int, bytes]:
    status, payload = _detector(body)
    answer = json.loads(payload)
    answer["results"][1]["result"].append({"type": "rectanglelabels", "score": 0.9,
                                           "value": {"x": 90, "y": 0, "width": 40, "height": 10,
                                                     "rectanglelabels": ["car"]}})
    answer["results"][1]["result"].append({"type": "choices", "score": 0.9, "value": {"choices": ["unicorn"]}})
    return status, json.dumps(answer).encode()


def test_an_unusable_result_item_is_quarantined_with_a_reason_and_the_rest_is_used(serve):
    batch = LabelStudioMLBackend(url=serve(_one_bad_item).url).predict(_images(), CLASSES, DAY)
    assert len(batch.prelabels) == 4  # two items x (scene + box): the good results of both tasks
    QUARANTINE.validate(batch.quarantined)
    assert batch.quarantined["item_id"].tolist() == ["item1", "item1"]
    assert batch.quarantined["stage"].eq("prelabel").all()
    details = " | ".join(batch.quarantined["detail"])
    assert "inside the image" in details and "'unicorn' is not in the ontology" in details


@pytest.mark.parametrize(("answer", "message"), [
    (lambda body: (200, b"<html>502 Bad Gateway</html>"), "is not JSON"),
    (lambda body: (200, b'{"predictions": []}'), "without a `results` list"),
    (lambda body: (500, b"CUDA out of memory\ntraceback..."), "HTTP 500: CUDA out of memory"),
    (lambda body: (200, json.dumps({"results": [{"result": []}]}).encode()), "1 predictions for 2 tasks"),
    (lambda body: (200, json.dumps({"results": [{"result": []}, {"result": []}]}).encode()), "without a model_version"),
])
def test_a_garbage_answer_is_a_one_line_error_naming_the_backend(serve, answer, message):
    backend = serve(answer)
    with pytest.raises(PrelabelServiceError) as caught:
        LabelStudioMLBackend(url=backend.url).predict(_images(), CLASSES, DAY)
    text = str(caught.value)
    assert message in text and f"{backend.url}/predict" in text and "\n" not in text


def test_a_slow_backend_is_given_up_on_after_its_timeout(serve):
    backend = serve(_detector, delay_s=2.0)
    started = time.monotonic()
    with pytest.raises(PrelabelServiceError, match=r"did not answer within 0.3 s"):
        LabelStudioMLBackend(url=backend.url, timeout_s=0.3).predict(_images(1), CLASSES, DAY)
    assert time.monotonic() - started < 1.5


def test_an_unreachable_backend_is_named():
    with pytest.raises(PrelabelServiceError, match="cannot be reached"):
        LabelStudioMLBackend(url="http://127.0.0.1:9", timeout_s=2).predict(_images(1), CLASSES, DAY)


def test_configuration_picks_the_model_and_the_local_default_is_the_built_in_one(tmp_path):
    local = build_prelabel_service(load_settings({}, root=tmp_path))
    assert isinstance(local, BuiltinPrelabelModel) and local.root == str(tmp_path.resolve())
    settings = load_settings({"ANNOTATION_PIPELINE_PRELABEL_BACKEND_URL": "http://ml:9090",
                              "ANNOTATION_PIPELINE_PRELABEL_BACKEND_TOKEN": "s3cret"}, root=tmp_path)
    assert "s3cret" not in repr(settings)
    external = build_prelabel_service(settings)
    assert isinstance(external, LabelStudioMLBackend) and external.url == "http://ml:9090"
    assert "s3cret" not in external.describe()
    with pytest.raises(SettingsError, match="expected an http"):
        load_settings({"ANNOTATION_PIPELINE_PRELABEL_BACKEND_URL": "ml:9090"})


@pytest.fixture
def root(tmp_path) -> Path:
    return save_day_images(tmp_path / "root", list(_images(3).values()))


_anonymized_items = anonymized_items_asset(3)


def _run(root: Path, url: str) -> dg.ExecuteInProcessResult:
    resources = {**build_resources("local", root), "prelabeler": LabelStudioMLBackend(url=url, timeout_s=5)}
    return dg.materialize([_anonymized_items, prelabels], partition_key=DAY, resources=resources,
                          raise_on_error=False)


def test_the_prelabels_asset_uses_the_backend_and_quarantines_what_it_cannot_use(serve, root):
    result = _run(root, serve(_one_bad_item).url)
    assert result.success
    meta = result.get_asset_materialization_events()[-1].materialization.metadata
    assert meta["model_version"].value == "team-yolo-7" and meta["result_items_quarantined"].value == 2
    assert meta["items"].value == meta["items_with_prelabels"].value + meta["items_without_prelabels"].value
    quarantined = DataRoot(path=str(root)).read_quarantine(DAY)
    assert quarantined["reason"].eq("ml_backend_unusable_prediction").sum() == 2


def test_a_garbage_answer_fails_the_step_with_the_reason_not_a_traceback(serve, root):
    result = _run(root, serve(lambda body: (200, b"not json at all")).url)
    assert not result.success
    failure = next(e.event_specific_data for e in result.all_events if e.is_step_failure)
    assert "is not JSON" in failure.error.message and "Traceback" not in failure.error.message
    assert failure.error.cls_name == "Failure"


def _always_fog(body: dict) -> tuple[int, bytes]:
    results = [{"result": [{"type": "choices", "value": {"choices": ["fog"]}, "score": 0.995}]} for _ in body["tasks"]]
    return 200, json.dumps({"results": results, "model_version": "team-fog-1"}).encode()


def test_an_external_model_is_measured_on_gold_like_ours_and_never_trained_here(serve, gold_root, tmp_path):
    from annotation_pipeline.defs.prelabel import prelabel_model

    root = tmp_path / "root"
    root.mkdir()
    (root / "gold").symlink_to(gold_root / "gold")  # shared read-only
    resources = {**build_resources("local", root), "prelabeler": LabelStudioMLBackend(url=serve(_always_fog).url)}
    result = dg.materialize([prelabel_model], resources=resources)
    meta = {k: getattr(v, "value", v) for k, v in result.get_asset_materialization_events()[-1].materialization.metadata.items()}
    assert meta["model_version"] == "team-fog-1" and meta["trained_from"].startswith("trained by its own team")
    assert meta["evidence_measured_on"] == "60 held-out gold items" and meta["cells_earning_auto_accept"] == 0
    assert not DataLayout(root).prelabel_model.exists()  # nothing of ours was trained
    evidence = pd.read_parquet(DataLayout(root).auto_accept_evidence)
    gold = pd.read_parquet(gold_root / "gold" / "gold_labels.parquet")
    fog_share = (gold[gold["kind"] == "choice"]["label"] == "fog").mean()
    assert evidence[["kind", "label", "band", "n"]].values.tolist() == [["choice", "fog", "0.99-1.00", 60]]
    assert evidence["precision"].iloc[0] == pytest.approx(fog_share)
