"""``annotation-pipeline anonymize``: the asset's image path on loose files, one line per bad one."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

from annotation_pipeline.anonymization.image import anonymize_image
from annotation_pipeline.cli.main import main


def write_jpeg(path: Path, pixels: np.ndarray) -> bytes:
    exif = Image.Exif()
    exif[0x013B] = "Canary Artist Zqxv"
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", quality=92, exif=exif)
    path.write_bytes(buf.getvalue())
    return buf.getvalue()


def test_each_output_keeps_its_stem_and_equals_what_the_asset_would_ship(tmp_path: Path, capsys) -> None:
    astronaut = write_jpeg(tmp_path / "astronaut.jpg", skdata.astronaut())
    Image.fromarray(skdata.coffee()).save(tmp_path / "coffee.png")
    out = tmp_path / "out"
    assert main(["anonymize", str(tmp_path / "astronaut.jpg"), str(tmp_path / "coffee.png"),
                 "--output", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert sorted(p.name for p in out.iterdir()) == ["astronaut.jpg", "coffee.png"]
    # Byte for byte what the anonymized_items asset writes for the same upload.
    assert (out / "astronaut.jpg").read_bytes() == anonymize_image(astronaut, "x.jpg").data
    assert b"Zqxv" not in (out / "astronaut.jpg").read_bytes()
    by_input = {Path(f["input"]).name: f for f in report["files"]}
    faces = [r for r in by_input["astronaut.jpg"]["redactions"] if r["kind"] == "face"]
    assert len(faces) == 1 and faces[0]["detector"] == "centerface" and "threshold" in faces[0]["detector_version"]
    assert {r["kind"] for r in by_input["astronaut.jpg"]["redactions"]} >= {"face", "exif"}
    assert [r for r in by_input["coffee.png"]["redactions"] if r["kind"] in ("face", "plate")] == []
    assert report["errors"] == []


def test_bad_inputs_get_one_line_each_the_good_ones_are_still_written(tmp_path: Path, capsys) -> None:
    write_jpeg(tmp_path / "good.jpg", skdata.astronaut())
    (tmp_path / "text.jpg").write_bytes(b"not an image")
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "sub").mkdir()
    write_jpeg(tmp_path / "sub" / "good.jpg", skdata.coffee())  # same stem as good.jpg
    args = [str(tmp_path / n) for n in ("good.jpg", "text.jpg", "empty.png", "missing.jpg", "sub", "sub/good.jpg")]
    assert main(["anonymize", *args, "--output", str(tmp_path / "out")]) == 1
    captured = capsys.readouterr()
    errors = captured.err.strip().splitlines()
    assert len(errors) == 5 and all(line.startswith("error: ") for line in errors)
    assert "Traceback" not in captured.err
    joined = "\n".join(errors)
    for words in ("text.jpg is not an image", "empty.png is empty", "missing.jpg: no such file",
                  "is a folder", "same stem as"):
        assert words in joined
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["good.jpg"]
    assert "1 written" in captured.out


def test_an_output_that_would_overwrite_its_input_is_refused(tmp_path: Path, capsys) -> None:
    original = write_jpeg(tmp_path / "photo.jpg", skdata.astronaut())
    assert main(["anonymize", str(tmp_path / "photo.jpg"), "--output", str(tmp_path)]) == 1
    assert "overwrite the input" in capsys.readouterr().err
    assert (tmp_path / "photo.jpg").read_bytes() == original


def test_output_must_be_a_folder_and_is_required(tmp_path: Path, capsys) -> None:
    write_jpeg(tmp_path / "a.jpg", skdata.coffee())
    (tmp_path / "file").write_text("x")
    assert main(["anonymize", str(tmp_path / "a.jpg"), "--output", str(tmp_path / "file")]) == 1
    assert "must be a folder" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["anonymize", str(tmp_path / "a.jpg")])
    assert exc.value.code == 2
