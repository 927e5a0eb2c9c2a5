"""Features of the built-in pre-label model: generic image descriptors, not the sample scenes' colours.

Scenes are described by colour histograms in HSV (hue weighted by saturation, saturation,
value) and a HOG of the downscaled grey image (rain streaks, fog's missing edges, night's
darkness are all visible there), objects by the HOG of their region's crop, the crop's HSV
histograms, its contrast with the image around it and its shape. HOG and colour histograms
are scikit-image's: they describe any photograph, so a team's own releases retrain the
same model on their own classes.

Region proposals are connected regions that stand out from the image's median colour: cheap,
class-agnostic, and good enough for pre-labels an annotator corrects.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from skimage.color import rgb2gray, rgb2hsv
from skimage.feature import hog
from skimage.transform import resize

FEATURE_VERSION = "hog-hsv-hist-v2"
# A region must differ from the image's median colour by this much (0-255, max over RGB) to
# be foreground: rain streaks (+40) and sensor noise (sigma 6) stay below it.
FOREGROUND_THRESHOLD = 55
MIN_REGION_PIXELS = 40
HUE_BINS, SAT_BINS, VALUE_BINS = 12, 4, 8
SCENE_SIDE = 64   # scene HOG on a 64x64 grey thumbnail: 8x8-pixel cells
CROP_SIDE = 24    # object HOG on a 24x24 grey crop: 8x8-pixel cells, 2x2-cell blocks
N_REGION_FEATURES = 9 * 4 * 4 + HUE_BINS + SAT_BINS + VALUE_BINS + 3 + 4


def hsv_histograms(rgb: np.ndarray) -> np.ndarray:
    """Normalized hue (weighted by saturation: grey pixels have no hue), saturation and value histograms."""
    hsv = rgb2hsv(rgb).reshape(-1, 3)
    hue, _ = np.histogram(hsv[:, 0], bins=HUE_BINS, range=(0, 1), weights=hsv[:, 1])
    sat, _ = np.histogram(hsv[:, 1], bins=SAT_BINS, range=(0, 1))
    val, _ = np.histogram(hsv[:, 2], bins=VALUE_BINS, range=(0, 1))
    n = max(len(hsv), 1)
    return np.concatenate([hue / max(hue.sum(), 1e-9), sat / n, val / n])


def scene_features(rgb: np.ndarray) -> np.ndarray:
    """HSV histograms of the whole image (every 4th pixel each way: the same histogram, 16x cheaper)
    and a HOG of its grey thumbnail."""
    grey = resize(rgb2gray(rgb), (SCENE_SIDE, SCENE_SIDE), anti_aliasing=True)
    texture = hog(grey, orientations=9, pixels_per_cell=(16, 16), cells_per_block=(1, 1), feature_vector=True)
    return np.concatenate([hsv_histograms(rgb[::4, ::4]), texture, [grey.std()]])


def _foreground_regions(rgb_f: np.ndarray, background: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Boxes (n, 4) and pixel counts of connected foreground regions big enough to be objects."""
    mask = np.abs(rgb_f - background).max(axis=2) > FOREGROUND_THRESHOLD
    mask = ndimage.binary_opening(mask, structure=np.ones((3, 3)))
    labels, n = ndimage.label(mask)
    if n == 0:
        return np.zeros((0, 4)), np.zeros(0)
    sizes = ndimage.sum_labels(mask, labels, np.arange(1, n + 1))
    slices = ndimage.find_objects(labels)
    boxes = np.array([[s[1].start, s[0].start, s[1].stop, s[0].stop] for s in slices], dtype=float)
    keep = sizes >= MIN_REGION_PIXELS
    return boxes[keep], sizes[keep]


def region_features(rgb: np.ndarray, boxes: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """One row per box: crop HOG, crop HSV histograms, contrast with the image, shape."""
    if not len(boxes):
        return np.zeros((0, N_REGION_FEATURES))
    height, width = rgb.shape[:2]
    median = np.median(rgb.reshape(-1, 3), axis=0) / 255.0
    rows = []
    for (x0, y0, x1, y1), size in zip(boxes.astype(int), sizes):  # one crop per proposal: HOG is per image
        crop = rgb[y0:y1, x0:x1]
        grey = resize(rgb2gray(crop), (CROP_SIDE, CROP_SIDE), anti_aliasing=True)
        texture = hog(grey, orientations=9, pixels_per_cell=(8, 8), cells_per_block=(2, 2), feature_vector=True)
        w, h = x1 - x0, y1 - y0
        shape = [np.log(w / h), size / (w * h), np.log(w / width), np.log(h / height)]
        contrast = crop.reshape(-1, 3).mean(0) / 255.0 - median
        rows.append(np.concatenate([texture, hsv_histograms(crop), contrast, shape]))
    return np.stack(rows)


def propose_regions(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Candidate object boxes (n, 4: x_min, y_min, x_max, y_max) and their features (n, f)."""
    rgb_f = rgb.astype(np.float32)
    boxes, sizes = _foreground_regions(rgb_f, np.median(rgb_f.reshape(-1, 3), axis=0))
    return boxes, region_features(rgb, boxes, sizes)


@dataclass(frozen=True)
class ImageFeatures:
    scene: np.ndarray    # scene_features
    boxes: np.ndarray    # (n, 4) region proposals
    regions: np.ndarray  # (n, f) their features


def featurize(images: dict[str, np.ndarray]) -> dict[str, ImageFeatures]:
    """Scene and region features of {item_id: rgb}: computed once, used to train and to predict."""
    return {i: ImageFeatures(scene_features(rgb), *propose_regions(rgb)) for i, rgb in images.items()}
