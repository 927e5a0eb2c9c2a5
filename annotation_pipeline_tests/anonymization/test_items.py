"""The anonymization stage: what leaves for the vendor carries no personal data, and it is auditable."""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from PIL import Image
from skimage import data as skdata

from annotation_pipeline.anonymization.items import (
    REIDENTIFICATION_MAP,
    SECRET_ENV_VAR,
    AnonymizationResult,
    FieldPolicy,
    FieldRule,
    SecretError,
    anonymize_items,
    default_policy,
    load_secret,
    store_reidentification_map,
)
from annotation_pipeline.contracts import ANONYMIZED_ITEMS, LANDING_ORIGINALS, QUARANTINE, RAW_ITEMS, REDACTION_LOG

SECRET = b"canary-secret-7f3e9b2d41c8a65e0d9f1b3c5a7e9d2f"
DATE = "2026-11-22"
OUT = f"anonymized/{DATE}"
ASTRONAUT_FACE = (177, 66, 95, 95)  # x, y, w, h (OpenCV's default-parameter detection)

# Distinctive personal data; none of it may reach anything we ship.
CANARIES = {
    "name": "Zebulon Quaxley",
    "email": "zebulon.quaxley@canary-mail.example",
    "phone": "+49 30 9876543",
    "iban": "DE89 3704 0044 0532 0130 00",
    "card": "4012 8888 8888 1881",
    "ip": "172.16.254.77",
    "national_id": "078-05-1120",
    "address": "17 Kanarienweg, Quaxleyhausen",
    "gps_text": "52.987654",
    "exif_artist": "Yolanda Vexworth",
    "exif_email": "yolanda@vexworth.example",
}


def jpeg_with_exif(pixels: np.ndarray) -> bytes:
    exif = Image.Exif()
    exif[0x013B] = CANARIES["exif_artist"]                          # Artist
    exif[0x8298] = CANARIES["exif_email"]                           # Copyright
    exif[0x010E] = f"Shot by {CANARIES['name']}"                    # ImageDescription
    exif[0x8825] = {1: "N", 2: (52.0, 59.0, 15.5), 3: "E", 4: (13.0, 24.0, 36.0)}  # GPS
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", quality=92, exif=exif)
    return buf.getvalue()


def png_bytes(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "PNG")
    return buf.getvalue()


def sidecar(name: str = CANARIES["name"], **extra) -> dict:
    return {
        "capture": {"camera": f"dashcam-2 owner {CANARIES['email']}", "timestamp": f"{DATE}T10:15:00Z"},
        "operator": {"name": name, "email": CANARIES["email"], "phone": CANARIES["phone"]},
        "location": {"address": CANARIES["address"], "gps": [float(CANARIES["gps_text"]), 13.41]},
        "device_ip": CANARIES["ip"],
        "customer": {"iban": CANARIES["iban"], "card": CANARIES["card"], "national_id": CANARIES["national_id"]},
        "notes": f"Recorded by {name}; call {CANARIES['phone']} if the upload fails.",
        "vendor_extra": {"contact": f"IBAN {CANARIES['iban']}, card {CANARIES['card']}",
                         "uploader_ips": [CANARIES["ip"], "2001:db8::7"]},
        **extra,
    }


def raw_partition(root: Path, entries: list[tuple[str, bytes, str, str | None]]) -> pd.DataFrame:
    """Write raw files like ingestion does; RAW_ITEMS rows beside their originals (see ``anonymize``)."""
    rows = []
    for name, content, metadata_json, caption in entries:
        item_id = hashlib.sha256(content + name.encode()).hexdigest()[:16]
        raw_path = f"raw/{DATE}/{name}"
        (root / raw_path).parent.mkdir(parents=True, exist_ok=True)
        (root / raw_path).write_bytes(content)
        rows.append({"item_id": item_id, "partition_date": DATE, "source_file": name, "raw_path": raw_path,
                     "media_type": "image/jpeg", "width": 0, "height": 0, "byte_size": len(content),
                     "metadata_json": metadata_json, "caption": caption})
    return pd.DataFrame(rows)


def anonymize(raw: pd.DataFrame, root: Path, out_dir: str, **options) -> AnonymizationResult:
    """Split a partition like ingestion does (pseudonymous RAW_ITEMS, restricted originals) and anonymize it."""
    originals = raw.assign(entry="landing_" + raw["item_id"], outcome="accepted")
    return anonymize_items(RAW_ITEMS.conform(raw), LANDING_ORIGINALS.conform(originals), root, out_dir, **options)


def seeded(root: Path) -> pd.DataFrame:
    street = np.full((240, 320, 3), 140, dtype=np.uint8)
    meta = sidecar()
    return raw_partition(root, [
        ("photo_astronaut.jpg", jpeg_with_exif(skdata.astronaut()), json.dumps(meta), meta["notes"]),
        ("cam_00001.png", png_bytes(street), json.dumps(sidecar(name="Olwen Prydderch")),
         f"Olwen Prydderch and {CANARIES['name']} waved; mail {CANARIES['email']}"),
    ])


def shipped_bytes(root: Path, result: AnonymizationResult) -> bytes:
    """Everything a vendor could receive: the anonymized files and the anonymized table."""
    files = b"".join(p.read_bytes() for p in sorted((root / OUT).rglob("*")) if p.is_file())
    return files + result.items.to_csv(index=False).encode("utf-8")


def variants(value: str) -> list[bytes]:
    compact = value.replace(" ", "").replace("-", "")
    return [v.encode("utf-8") for v in {value, value.lower(), compact}] + [value.encode("utf-16-le")]


def test_canary_no_seeded_personal_data_reaches_the_anonymized_output(tmp_path: Path) -> None:
    raw = seeded(tmp_path)
    result = anonymize(raw, tmp_path, OUT, secret=SECRET, policy=default_policy())
    shipped = shipped_bytes(tmp_path, result).lower()
    hits = [(kind, v) for kind, value in CANARIES.items() for v in variants(value) if v.lower() in shipped]
    hits += [("name-token", t.encode()) for t in ("Zebulon", "Quaxley", "Olwen", "Prydderch", "Vexworth")
             if t.lower().encode() in shipped]
    assert hits == []
    assert result.accepted == 2 and result.quarantined == 0


def test_canary_no_shipped_image_carries_exif_and_the_face_is_blurred(tmp_path: Path) -> None:
    raw = seeded(tmp_path)
    result = anonymize(raw, tmp_path, OUT, secret=SECRET)
    for path in result.items["image_path"]:
        image = Image.open(tmp_path / path)
        assert image.format == {".png": "PNG", ".jpg": "JPEG"}[Path(path).suffix]  # JPEG uploads stay JPEG
        assert len(image.getexif()) == 0
        assert not set(image.info) & {"exif", "xmp", "XML:com.adobe.xmp", "icc_profile", "comment"}
    astronaut = result.items.loc[0]
    faces = result.redaction_log[(result.redaction_log["item_id"] == astronaut["item_id"])
                                 & (result.redaction_log["kind"] == "face")]
    x, y, w, h = ASTRONAUT_FACE
    covers = (faces["x_min"] <= x) & (faces["y_min"] <= y) & (faces["x_max"] >= x + w) & (faces["y_max"] >= y + h)
    assert covers.sum() == 1
    shipped = np.asarray(Image.open(tmp_path / astronaut["image_path"]))

    def sharpness(rgb: np.ndarray) -> float:
        return float(cv2.Laplacian(cv2.cvtColor(rgb[y:y + h, x:x + w], cv2.COLOR_RGB2GRAY), cv2.CV_64F).var())

    assert sharpness(shipped) < sharpness(skdata.astronaut()) / 50


def test_the_secret_never_appears_in_outputs_log_quarantine_or_repr(tmp_path: Path) -> None:
    broken = raw_partition(tmp_path, [("broken.jpg", b"\xff\xd8\xff\xe0 cut", "{}", None)])
    raw = pd.concat([seeded(tmp_path), broken], ignore_index=True)
    result = anonymize(raw, tmp_path, OUT, secret=SECRET)
    everything = b"".join([
        shipped_bytes(tmp_path, result),
        result.redaction_log.to_csv().encode(), result.quarantine.to_csv().encode(),
        result.reidentification_map.to_csv().encode(), repr(result).encode(),
        json.dumps(result.summary()).encode(),
    ])
    for form in (SECRET, SECRET.hex().encode(), SECRET.decode().upper().encode()):
        assert form not in everything
    assert "Zebulon" not in repr(result)  # the re-identification map stays out of logs


def test_pseudonyms_are_stable_across_runs_and_change_with_the_secret(tmp_path: Path) -> None:
    raw = seeded(tmp_path)
    first = anonymize(raw, tmp_path, OUT, secret=SECRET)
    second = anonymize(raw, tmp_path, OUT, secret=SECRET)
    other = anonymize(raw, tmp_path, "anonymized/other", secret=b"another-secret-" * 3)
    pd.testing.assert_frame_equal(first.items, second.items)
    operator = json.loads(first.items.loc[0, "metadata_json"])["operator"]
    assert operator["name"].startswith("person_") and operator["email"].startswith("email_")
    assert json.loads(other.items.loc[0, "metadata_json"])["operator"]["name"] != operator["name"]


def test_a_declared_name_is_replaced_by_its_pseudonym_in_the_free_text_of_every_item(tmp_path: Path) -> None:
    result = anonymize(seeded(tmp_path), tmp_path, OUT, secret=SECRET)
    zebulon = json.loads(result.items.loc[0, "metadata_json"])["operator"]["name"]
    olwen = json.loads(result.items.loc[1, "metadata_json"])["operator"]["name"]
    # Item 2's caption names item 1's operator: the partition's declared names are known everywhere.
    assert result.items.loc[1, "caption"] == f"{olwen} and {zebulon} waved; mail [EMAIL]"
    reid = result.reidentification_map
    assert set(reid.loc[reid["pseudonym"] == zebulon, "original_value"]) == {CANARIES["name"]}
    assert {"operator.name", "caption", "notes"} <= set(reid.loc[reid["pseudonym"] == zebulon, "field"])


def test_the_redaction_log_says_what_where_how_many_and_by_which_detector(tmp_path: Path) -> None:
    result = anonymize(seeded(tmp_path), tmp_path, OUT, secret=SECRET)
    log = result.redaction_log
    REDACTION_LOG.validate(log)
    first = log[log["item_id"] == result.items.loc[0, "item_id"]]
    by = first.groupby(["field", "kind", "action"])["count"].sum().to_dict()
    assert by[("capture.camera", "email", "redact")] == 1          # keep fields are still scanned
    assert by[("vendor_extra.contact", "iban", "redact")] == 1     # undeclared fields are scanned
    assert by[("vendor_extra.contact", "card", "redact")] == 1
    assert by[("vendor_extra.uploader_ips", "ip", "redact")] == 2
    assert by[("customer.national_id", "national_id", "drop")] == 1
    assert by[("location.gps", "gps", "drop")] == 1
    assert by[("operator.name", "name", "pseudonymize")] == 1
    assert by[("image", "gps", "strip")] == 4
    assert by[("image", "face", "pixelate")] == 1  # the astronaut's face (CenterFace; Haar also boxed her suit)
    assert result.items["n_redactions"].tolist() == log.groupby("item_id")["count"].sum()[result.items["item_id"]].tolist()
    metadata = json.loads(result.items.loc[0, "metadata_json"])
    assert metadata["capture"] == {"camera": "dashcam-2 owner [EMAIL]", "timestamp": f"{DATE}T10:15:00Z"}
    assert metadata["vendor_extra"]["uploader_ips"] == ["[IP]", "[IP]"]
    assert "customer" not in metadata or metadata["customer"] == {}


def test_bad_items_are_quarantined_with_a_reason_and_the_rest_of_the_partition_goes_on(tmp_path: Path) -> None:
    good = png_bytes(np.full((60, 80, 3), 90, dtype=np.uint8))
    buf = io.BytesIO()
    Image.new("RGB", (500, 500)).save(buf, "PNG")
    raw = raw_partition(tmp_path, [
        ("good.png", good, json.dumps({"notes": "fine"}), "ok"),
        ("empty.jpg", b"", "{}", None),
        ("truncated.png", buf.getvalue()[:200], "{}", None),
        ("notes.txt", b"just text", "{}", None),
        ("bad_json.png", good, "{not json", None),
        ("list_json.png", good, "[1, 2]", None),
    ])
    outside = raw.iloc[[0]].assign(item_id="0000aaaa0000bbbb", raw_path="../../etc/passwd", source_file="evil.png")
    missing = raw.iloc[[0]].assign(item_id="0000cccc0000dddd", raw_path=f"raw/{DATE}/gone.png", source_file="gone.png")
    raw = pd.concat([raw, outside, missing], ignore_index=True)
    result = anonymize(raw, tmp_path, OUT, secret=SECRET)
    assert result.received == 8 and result.accepted + result.quarantined == result.received
    assert result.items["item_id"].tolist() == [raw.loc[0, "item_id"]]
    # Quarantine rows name items by their raw store name, never by the uploaded one.
    reasons = dict(zip(result.quarantine["source_file"], result.quarantine["reason"]))
    assert reasons == {
        "empty.jpg": "empty_file", "truncated.png": "corrupt_image", "notes.txt": "unsupported_format",
        "bad_json.png": "invalid_metadata_json", "list_json.png": "invalid_metadata_json",
        "passwd": "raw_path_outside_root", "gone.png": "missing_file",
    }
    QUARANTINE.validate(result.quarantine)
    assert set(result.quarantine["stage"]) == {"anonymization"}
    details = dict(zip(result.quarantine["source_file"], result.quarantine["detail"]))
    assert "bad_json.png is not valid JSON" in details["bad_json.png"]
    assert "list_json.png is a JSON list, expected an object" in details["list_json.png"]
    assert "truncated" in details["truncated.png"]
    shipped = sorted(p.name for p in (tmp_path / OUT).iterdir())
    assert shipped == [f"{raw.loc[0, 'item_id']}.png"]  # nothing written for quarantined items
    assert set(result.redaction_log["item_id"]) <= set(result.items["item_id"])


def test_sensitive_regions_given_by_a_person_are_obscured(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    noise = rng.integers(0, 256, (100, 100, 3), dtype=np.uint8)
    raw = raw_partition(tmp_path, [("n.png", png_bytes(noise), "{}", None), ("m.png", png_bytes(noise[::-1]), "{}", None)])
    ids = raw["item_id"].tolist()
    result = anonymize(raw, tmp_path, OUT, secret=SECRET,
                             sensitive_regions={ids[0]: [(10, 10, 50, 50)], ids[1]: [(200, 200, 300, 300)]})
    assert result.items["item_id"].tolist() == [ids[0]]
    assert result.quarantine["reason"].tolist() == ["invalid_sensitive_region"]
    out = np.asarray(Image.open(tmp_path / result.items.loc[0, "image_path"]))
    assert out[10:50, 10:50].std() < noise[10:50, 10:50].std() / 3
    assert np.array_equal(out[60:, 60:], noise[60:, 60:])


def test_outputs_conform_to_their_contracts_and_paths_are_relative_to_the_root(tmp_path: Path) -> None:
    result = anonymize(seeded(tmp_path), tmp_path, OUT, secret=SECRET)
    ANONYMIZED_ITEMS.validate(result.items)
    REIDENTIFICATION_MAP.validate(result.reidentification_map)
    assert all(p.startswith(OUT + "/") and (tmp_path / p).is_file() for p in result.items["image_path"])
    assert result.items[["width", "height"]].values.tolist() == [[512, 512], [320, 240]]
    assert result.summary()["received"] == 2


def test_a_policy_of_drop_on_the_caption_removes_it(tmp_path: Path) -> None:
    policy = FieldPolicy({**default_policy().fields, "caption": FieldRule("drop")})
    result = anonymize(seeded(tmp_path), tmp_path, OUT, secret=SECRET, policy=policy)
    assert result.items["caption"].isna().all()


def test_the_reidentification_map_is_stored_owner_only_and_never_beside_vendor_data(tmp_path: Path) -> None:
    result = anonymize(seeded(tmp_path), tmp_path, OUT, secret=SECRET)
    vendor = tmp_path / "vendors" / "simvendor" / "outbox"
    with pytest.raises(ValueError, match="overlaps the vendor-facing folder"):
        store_reidentification_map(result.reidentification_map, vendor / "maps", DATE, vendor_dirs=[vendor])
    with pytest.raises(ValueError, match="overlaps"):
        store_reidentification_map(result.reidentification_map, tmp_path, DATE, vendor_dirs=[tmp_path / OUT])
    path = store_reidentification_map(result.reidentification_map, tmp_path / "restricted" / "reid", DATE,
                                      vendor_dirs=[vendor, tmp_path / OUT])
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    pd.testing.assert_frame_equal(pd.read_parquet(path), result.reidentification_map)


def test_load_secret_explains_a_missing_or_short_secret_without_echoing_it() -> None:
    with pytest.raises(SecretError, match=f"{SECRET_ENV_VAR} is not set"):
        load_secret({})
    with pytest.raises(SecretError, match="is 9 bytes long, at least 32") as err:
        load_secret({SECRET_ENV_VAR: "hunter2!!"})
    assert "hunter2" not in str(err.value)
    assert load_secret({SECRET_ENV_VAR: SECRET.decode()}) == SECRET
    with pytest.raises(SecretError):
        anonymize_items(RAW_ITEMS.empty(), LANDING_ORIGINALS.empty(), Path("."), OUT, secret=b"short")
