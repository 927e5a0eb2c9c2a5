"""Generated test scenes for the anonymization benchmark: faces, non-face patches and plates.

Nothing is downloaded. Face sources are the photos shipped inside installed packages:

- ``skimage.data.astronaut()`` (Eileen Collins, colour) and matplotlib's sample
  ``grace_hopper.jpg`` (colour): each face is located once with OpenCV's Haar cascade at its
  default parameters (an independent detector), cut out with its hair, neck and background,
  and pasted with augmentation (mirror, rotation up to 15 degrees, gamma, grey or tinted);
- the 100 face crops of ``skimage.data.lfw_subset()`` (25x25 grey, tight around the face:
  no hair, no context, the hardest case for a detector that looks at heads).

Backgrounds are scikit-image's photos without people (coffee, chelsea, rocket, ...), cropped
and resized to the scene, or the sample world's generated street scenes. Scenes are encoded
as JPEG quality 85 (the issue's setting). Non-face patches: the 100 non-face crops of
``lfw_subset`` and 100 random cuts of the background photos, pasted the same way.
Plates: rendered licence plates (white field, black frame, random letters and digits in
DejaVu Sans Bold from matplotlib's fonts), several widths and angles, on the same backgrounds.
"""

from __future__ import annotations

import io
import os
import string
from dataclasses import dataclass
from pathlib import Path

import cv2
import matplotlib
import numpy as np
from PIL import Image, ImageDraw, ImageFont
from skimage import data as skdata

from annotation_pipeline.sample_world.sample_data import render_scene

SCENE_SIZE = (640, 480)
JPEG_QUALITY = 85
FACE_BANDS = ((24, 32), (32, 48), (48, 96), (96, 160))
# Photos shipped with scikit-image that show no person (astronaut and camera do).
BACKGROUND_PHOTOS = ("coffee", "chelsea", "rocket", "coins", "page", "brick", "grass", "gravel",
                     "hubble_deep_field", "immunohistochemistry", "moon", "text", "clock", "colorwheel")


@dataclass
class Scene:
    jpeg: bytes                 # the scene as the pipeline receives it
    boxes: np.ndarray           # n x 4 ground-truth boxes (faces, non-face patches or plates)
    source: list[str]           # where each box's content came from


def _haar_face(rgb: np.ndarray) -> tuple[int, int, int, int]:
    """The largest face OpenCV's default-parameter cascade finds: (x, y, w, h)."""
    casc = cv2.CascadeClassifier(os.path.join(cv2.data.haarcascades, "haarcascade_frontalface_default.xml"))
    found = casc.detectMultiScale(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), 1.1, 5, minSize=(24, 24))
    x, y, w, h = max(found, key=lambda f: f[2] * f[3])
    return int(x), int(y), int(w), int(h)


@dataclass
class FaceSource:
    name: str
    crop: np.ndarray            # RGB, the face with its surroundings
    face: tuple[int, int, int, int]  # x0, y0, x1, y1 of the face inside crop


def face_sources() -> list[FaceSource]:
    sources = []
    hopper = np.asarray(Image.open(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg").convert("RGB"))
    for name, photo in (("astronaut", skdata.astronaut()), ("grace_hopper", hopper)):
        x, y, w, h = _haar_face(photo)
        m = int(0.6 * w)  # hair, ears, neck and some background around the face
        x0, y0 = max(0, x - m), max(0, y - m)
        x1, y1 = min(photo.shape[1], x + w + m), min(photo.shape[0], y + h + m)
        sources.append(FaceSource(name, photo[y0:y1, x0:x1].copy(), (x - x0, y - y0, x - x0 + w, y - y0 + h)))
    for i, face in enumerate(skdata.lfw_subset()[:100]):
        grey = (face * 255).astype(np.uint8)
        sources.append(FaceSource(f"lfw{i:03d}", np.repeat(grey[:, :, None], 3, axis=2), (0, 0, 25, 25)))
    return sources


def non_face_patches(rng: np.random.Generator) -> list[FaceSource]:
    patches = []
    for i, crop in enumerate(skdata.lfw_subset()[100:]):
        grey = (crop * 255).astype(np.uint8)
        patches.append(FaceSource(f"lfw-nonface{i:03d}", np.repeat(grey[:, :, None], 3, axis=2), (0, 0, 25, 25)))
    photos = [_photo(name) for name in BACKGROUND_PHOTOS]
    for i in range(100):
        photo = photos[i % len(photos)]
        side = int(rng.integers(32, min(photo.shape[:2]) // 2))
        y, x = int(rng.integers(0, photo.shape[0] - side)), int(rng.integers(0, photo.shape[1] - side))
        patches.append(FaceSource(f"photo-cut{i:03d}", photo[y:y + side, x:x + side].copy(), (0, 0, side, side)))
    return patches


def _photo(name: str) -> np.ndarray:
    photo = getattr(skdata, name)()
    if photo.ndim == 2:
        photo = np.repeat(photo[:, :, None], 3, axis=2)
    return np.ascontiguousarray(photo[:, :, :3]).astype(np.uint8)


def background(rng: np.random.Generator, size: tuple[int, int] = SCENE_SIZE) -> np.ndarray:
    """Half the scenes: a photo without people, cropped and resized; half: a generated street."""
    width, height = size
    if rng.random() < 0.5:
        return np.asarray(render_scene(rng, size)[0]).copy()
    photo = _photo(str(rng.choice(BACKGROUND_PHOTOS)))
    ph, pw = photo.shape[:2]
    crop_w = int(rng.integers(pw // 2, pw + 1))
    crop_h = min(ph, int(crop_w * height / width))
    x, y = int(rng.integers(0, pw - crop_w + 1)), int(rng.integers(0, ph - crop_h + 1))
    return cv2.resize(photo[y:y + crop_h, x:x + crop_w], size, interpolation=cv2.INTER_AREA)


def _augment(rng: np.random.Generator, source: FaceSource) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    crop, (fx0, fy0, fx1, fy1) = source.crop, source.face
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
        fx0, fx1 = crop.shape[1] - fx1, crop.shape[1] - fx0
    angle = float(rng.uniform(-15, 15))
    centre = ((fx0 + fx1) / 2, (fy0 + fy1) / 2)
    turn = cv2.getRotationMatrix2D(centre, angle, 1.0)
    crop = cv2.warpAffine(np.ascontiguousarray(crop), turn, (crop.shape[1], crop.shape[0]), borderMode=cv2.BORDER_REFLECT)
    gamma = float(rng.uniform(0.6, 1.6))
    crop = (255 * (crop / 255.0) ** gamma).astype(np.uint8)
    if rng.random() < 0.25:
        crop = np.repeat(cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)[:, :, None], 3, axis=2)
    elif rng.random() < 0.3:
        crop = np.clip(crop * rng.uniform(0.8, 1.2, 3), 0, 255).astype(np.uint8)
    return crop, (fx0, fy0, fx1, fy1)


def _encode(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=JPEG_QUALITY)
    return buf.getvalue()


def paste_scene(rng: np.random.Generator, items: list[FaceSource], band: tuple[int, int],
                size: tuple[int, int] = SCENE_SIZE, augment: bool = True) -> Scene:
    """A scene with each item pasted so that its marked box is ``band`` pixels wide, no overlaps."""
    image = background(rng, size)
    width, height = size
    boxes, names, taken = [], [], []
    for item in items:
        crop, (fx0, fy0, fx1, fy1) = _augment(rng, item) if augment else (item.crop, item.face)
        target = float(rng.uniform(band[0], band[1]))
        scale = target / (fx1 - fx0)
        ch, cw = max(1, round(crop.shape[0] * scale)), max(1, round(crop.shape[1] * scale))
        if cw >= width or ch >= height:
            continue
        for _ in range(60):  # rejection sampling: pasted crops do not overlap (8 px apart)
            x, y = int(rng.integers(0, width - cw)), int(rng.integers(0, height - ch))
            if all(x + cw + 8 <= a or x >= c + 8 or y + ch + 8 <= b or y >= d + 8 for a, b, c, d in taken):
                break
        else:
            continue
        interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
        image[y:y + ch, x:x + cw] = cv2.resize(np.ascontiguousarray(crop), (cw, ch), interpolation=interpolation)
        taken.append((x, y, x + cw, y + ch))
        boxes.append((x + fx0 * scale, y + fy0 * scale, x + fx1 * scale, y + fy1 * scale))
        names.append(item.name)
    return Scene(_encode(image), np.asarray(boxes, dtype=np.float64).reshape(-1, 4), names)


def face_scenes(seed: int, band: tuple[int, int], per_source: int = 1) -> list[Scene]:
    """Every face source ``per_source`` times (the two colour photos 30 times more, augmented)."""
    rng = np.random.default_rng(seed)
    sources = face_sources()
    items = [s for s in sources for _ in range(per_source * (30 if not s.name.startswith("lfw") else 1))]
    order = rng.permutation(len(items))
    per_scene = 4 if band[1] <= 96 else 2
    return [paste_scene(rng, [items[j] for j in order[i:i + per_scene]], band)
            for i in range(0, len(order), per_scene)]


def non_face_scenes(seed: int) -> list[Scene]:
    rng = np.random.default_rng(seed)
    patches = non_face_patches(rng)
    scenes = []
    for i in range(0, len(patches), 4):
        band = FACE_BANDS[(i // 4) % len(FACE_BANDS)]
        scenes.append(paste_scene(rng, patches[i:i + 4], band, augment=False))
    return scenes


# --------------------------------------------------------------------------------------------
# Plates
# --------------------------------------------------------------------------------------------

PLATE_WIDTHS = ((40, 60), (60, 100), (100, 200))
PLATE_ANGLES = (0.0, 10.0, 20.0)


def _plate(rng: np.random.Generator) -> np.ndarray:
    """A plate at 520x112 px (the EU size ratio), random characters, as RGB."""
    text = "".join(rng.choice(list(string.ascii_uppercase), 2)) + "-" + \
           "".join(rng.choice(list(string.ascii_uppercase), 2)) + " " + "".join(rng.choice(list(string.digits), 4))
    image = Image.new("RGB", (520, 112), (245, 245, 240))
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, 519, 111), outline=(10, 10, 10), width=6)
    draw.rectangle((6, 6, 50, 105), fill=(20, 50, 160))  # the EU band
    font = ImageFont.truetype(str(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans-Bold.ttf"), 80)
    draw.text((62, 10), text, fill=(15, 15, 15), font=font)
    return np.asarray(image)


def plate_scenes(seed: int, widths: tuple[int, int], angle: float, n: int = 40) -> list[Scene]:
    """n scenes with one plate each, ``widths`` px wide, turned by +-``angle`` degrees (and a car)."""
    rng = np.random.default_rng(seed)
    scenes = []
    for _ in range(n):
        image = background(rng)
        plate = _plate(rng)
        width = float(rng.uniform(*widths))
        scale = width / plate.shape[1]
        small = cv2.resize(plate, (round(plate.shape[1] * scale), max(1, round(plate.shape[0] * scale))),
                           interpolation=cv2.INTER_AREA)
        h, w = small.shape[:2]
        tilt = angle * (1 if rng.random() < 0.5 else -1)
        turn = cv2.getRotationMatrix2D((w / 2, h / 2), tilt, 1.0)
        corners = np.array([[0, 0, 1], [w, 0, 1], [0, h, 1], [w, h, 1]], dtype=np.float64) @ turn.T
        lo, hi = corners.min(axis=0), corners.max(axis=0)
        turn[:, 2] -= lo
        bw, bh = int(np.ceil(hi[0] - lo[0])), int(np.ceil(hi[1] - lo[1]))
        turned = cv2.warpAffine(small, turn, (bw, bh), borderValue=(0, 0, 0))
        mask = cv2.warpAffine(np.full((h, w), 255, np.uint8), turn, (bw, bh)) > 127
        x = int(rng.integers(10, SCENE_SIZE[0] - bw - 10))
        y = int(rng.integers(SCENE_SIZE[1] // 3, SCENE_SIZE[1] - bh - 10))
        # a car body behind the plate, so that the plate sits on something
        pad = int(0.6 * w)
        colour = tuple(int(c) for c in rng.integers(20, 230, 3))
        cv2.rectangle(image, (max(0, x - pad), max(0, y - pad // 2)),
                      (min(SCENE_SIZE[0] - 1, x + bw + pad), min(SCENE_SIZE[1] - 1, y + bh + pad // 3)), colour, -1)
        region = image[y:y + bh, x:x + bw]
        region[mask] = turned[mask]
        scenes.append(Scene(_encode(image), np.array([[x, y, x + bw, y + bh]], dtype=np.float64), ["plate"]))
    return scenes


def coverage(box: np.ndarray, regions: np.ndarray, shape: tuple[int, int]) -> float:
    """Fraction of ``box`` covered by the union of ``regions`` (pixels)."""
    x0, y0, x1, y1 = np.floor(box[:2]).astype(int).tolist() + np.ceil(box[2:]).astype(int).tolist()
    x0, y0 = max(0, x0), max(0, y0)
    x1, y1 = min(shape[1], x1), min(shape[0], y1)
    if x1 <= x0 or y1 <= y0:
        return 0.0
    mask = np.zeros((y1 - y0, x1 - x0), dtype=bool)
    for rx0, ry0, rx1, ry1 in np.asarray(regions, dtype=np.float64).reshape(-1, 4):
        a, b = int(np.floor(rx0)) - x0, int(np.floor(ry0)) - y0
        c, d = int(np.ceil(rx1)) - x0, int(np.ceil(ry1)) - y0
        mask[max(0, b):max(0, d), max(0, a):max(0, c)] = True
    return float(mask.mean())
