"""``faces-det``: a COMPOSITED face-detection set built from data shipped in scikit-image.

This is not a real detection benchmark. Real face-detection data (FDDB) cannot be
downloaded here, so images are made: the 100 LFW face crops of
``skimage.data.lfw_subset()`` (25x25 grey) are pasted, at random positions and sizes,
onto non-face backgrounds, and the pasted squares are the ground-truth boxes. Use it to
exercise and compare detectors; for real numbers use a local FDDB copy
(:func:`dtmm.data.fddb.load_fddb`, ``fddb:PATH``).

How image ``i`` of ``load_faces_det(n, size, seed)`` is made (its own generator
``default_rng([seed, i])``, so image ``i`` does not depend on ``n``):

* **background**: a random square crop (a quarter of the side up to the whole) of one
  of scikit-image's bundled non-face pictures (brick, grass, gravel, coins, moon, text,
  page, rocket, coffee, Hubble deep field, immunohistochemistry, retina, cell, clock,
  checkerboard; the cameraman, astronaut and cat pictures are left out: they show
  faces), converted to grey, resized to ``size x size``, randomly flipped, with random
  gain (0.6-1.2) and offset (-0.2..0.2);
* **faces**: 0, 1, 2 or 3 (probabilities 0.1 / 0.4 / 0.3 / 0.2) LFW faces, each a
  square of side log-uniform in [16, 56] px (at 112; scaled with ``size``), randomly
  mirrored, gain 0.7-1.3 and offset -0.15..0.15, edges feathered over ~8% of the side,
  never overlapping another pasted square (a face that finds no free place in 30 tries
  is left out); its box is the pasted square ``(x0, y0, x0 + s, y0 + s)``;
* **distractors**: 0-2 of the 100 LFW *non-face* crops pasted the same way, without
  boxes, so that a detector cannot just find pasted squares.

Fold ``f = i % 10`` (the image's ``group``) only uses faces and distractors whose index
is ``f`` modulo 10, so :func:`dtmm.data.split` (group-aware for detection sets) never
shows a test face during training. Backgrounds are shared by all folds.

Example:
    >>> ds = load_faces_det(20)
    >>> ds.name, ds.input_shape, ds.class_names, ds.n_boxes > 10
    ('faces-det', (1, 112, 112), ('face',), True)
    >>> bool((load_faces_det(20).x == ds.x).all())        # deterministic
    True
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from dtmm.data.detection import DetectionDataset
from dtmm.errors import DataError

__all__ = ["load_faces_det", "FACES_DET_IMAGES", "FACES_DET_SIZE", "BACKGROUNDS"]

#: Images and side of the registered ``faces-det`` dataset.
FACES_DET_IMAGES = 1500
FACES_DET_SIZE = 112
#: scikit-image pictures used as backgrounds (none shows a face).
BACKGROUNDS = ("brick", "grass", "gravel", "coins", "moon", "text", "page", "rocket", "coffee",
               "hubble_deep_field", "immunohistochemistry", "retina", "cell", "clock",
               "checkerboard")
_FOLDS = 10
_N_FACES_P = (0.1, 0.4, 0.3, 0.2)
_N_DISTRACT_P = (0.4, 0.4, 0.2)


@lru_cache(maxsize=1)
def _sources():
    import skimage.data
    from skimage.color import rgb2gray

    lfw = np.asarray(skimage.data.lfw_subset(), dtype=np.float64)
    if lfw.shape != (200, 25, 25):
        raise DataError(f"dataset 'faces-det': expected 200 LFW crops of 25x25, got {lfw.shape}")
    if lfw.max() > 1.0:
        lfw = lfw / 255.0
    bgs = []
    for name in BACKGROUNDS:
        a = np.asarray(getattr(skimage.data, name)())
        if a.ndim == 3:
            a = rgb2gray(a[..., :3])
        a = a.astype(np.float64)
        bgs.append(a / 255.0 if a.max() > 1.0 else a)
    return lfw[:100], lfw[100:], bgs


def _feather(s: int) -> np.ndarray:
    r = max(1.0, 0.08 * s)
    d = np.minimum(np.arange(s) + 0.5, s - 0.5 - np.arange(s)) / r
    ramp = np.clip(d, 0.0, 1.0)
    return np.minimum(ramp[:, None], ramp[None, :])


def _paste(img, patch, rng, taken, lo, hi):
    from skimage.transform import resize

    size = img.shape[0]
    s = int(round(np.exp(rng.uniform(np.log(lo), np.log(hi)))))
    s = max(4, min(s, size))
    p = resize(patch, (s, s), order=1, anti_aliasing=True, mode="reflect")
    if rng.random() < 0.5:
        p = p[:, ::-1]
    p = np.clip(p * rng.uniform(0.7, 1.3) + rng.uniform(-0.15, 0.15), 0.0, 1.0)
    for _ in range(30):
        x0, y0 = (int(v) for v in rng.integers(0, size - s + 1, size=2))
        if all(x0 >= bx1 or x0 + s <= bx0 or y0 >= by1 or y0 + s <= by0
               for bx0, by0, bx1, by1 in taken):
            a = _feather(s)
            region = img[y0:y0 + s, x0:x0 + s]
            img[y0:y0 + s, x0:x0 + s] = a * p + (1 - a) * region
            box = (x0, y0, x0 + s, y0 + s)
            taken.append(box)
            return box
    return None


def _image(i: int, size: int, seed: int):
    from skimage.transform import resize

    faces, nonfaces, bgs = _sources()
    rng = np.random.default_rng([seed, i])
    fold = i % _FOLDS
    src = bgs[int(rng.integers(len(bgs)))]
    side = int(min(src.shape) * rng.uniform(0.25, 1.0))
    side = max(side, min(min(src.shape), size // 2))
    y0 = int(rng.integers(0, src.shape[0] - side + 1))
    x0 = int(rng.integers(0, src.shape[1] - side + 1))
    img = resize(src[y0:y0 + side, x0:x0 + side], (size, size), order=1, anti_aliasing=True,
                 mode="reflect")
    if rng.random() < 0.5:
        img = img[:, ::-1]
    img = np.clip(img * rng.uniform(0.6, 1.2) + rng.uniform(-0.2, 0.2), 0.0, 1.0).copy()
    lo, hi = 16.0 * size / 112, 56.0 * size / 112
    pool_f = np.arange(fold, len(faces), _FOLDS)
    pool_n = np.arange(fold, len(nonfaces), _FOLDS)
    taken: list = []
    boxes = []
    for _ in range(int(rng.choice(len(_N_FACES_P), p=_N_FACES_P))):
        b = _paste(img, faces[int(rng.choice(pool_f))], rng, taken, lo, hi)
        if b is not None:
            boxes.append(b)
    for _ in range(int(rng.choice(len(_N_DISTRACT_P), p=_N_DISTRACT_P))):
        _paste(img, nonfaces[int(rng.choice(pool_n))], rng, taken, lo, hi)
    return img.astype(np.float32), np.asarray(boxes, np.float32).reshape(-1, 4), fold


@lru_cache(maxsize=4)
def _build(n_images: int, size: int, seed: int):
    x = np.empty((n_images, 1, size, size), np.float32)
    boxes, groups = [], np.empty(n_images, np.int64)
    for i in range(n_images):
        x[i, 0], b, groups[i] = _image(i, size, seed)
        boxes.append(b)
    x.setflags(write=False)
    return x, tuple(boxes), groups


def load_faces_det(n_images: int = FACES_DET_IMAGES, *, size: int = FACES_DET_SIZE,
                   seed: int = 0) -> DetectionDataset:
    """The composited face-detection set (see the module docstring): ``n_images`` grey
    ``1 x size x size`` images with their face boxes, deterministic for a ``seed``."""
    if int(n_images) < 1:
        raise DataError(f"faces-det: n_images must be >= 1, got {n_images}")
    if int(size) < 32:
        raise DataError(f"faces-det: size must be >= 32 pixels, got {size}")
    x, boxes, groups = _build(int(n_images), int(size), int(seed))
    return DetectionDataset(x.copy(), boxes, ("face",), "faces-det",
                            f"composited from skimage.data.lfw_subset (seed {seed})", groups.copy())
