"""Tests of dtmm.data: built-in datasets, local-file loaders, splits, batching."""

from __future__ import annotations

import doctest
import os
import pickle

import numpy as np
import pytest

import dtmm.data
import dtmm.data.builtin
import dtmm.data.dataset
import dtmm.data.files
from dtmm.data import DATASET_NAMES, Dataset, iterate_batches, load_dataset, split
from dtmm.errors import DataError


def _toy(n_per_class=(10, 20, 30), shape=(1, 2, 2)) -> Dataset:
    y = np.concatenate([np.full(n, c) for c, n in enumerate(n_per_class)])
    x = np.arange(len(y) * int(np.prod(shape)), dtype=np.float32).reshape(len(y), *shape)
    return Dataset(x, y, tuple(f"c{c}" for c in range(len(n_per_class))), "toy")


# --------------------------------------------------------------------------- built-ins

@pytest.mark.parametrize(
    "spec, n, shape, classes",
    [("mnist5k", 5000, (1, 28, 28), 10), ("digits", 1797, (1, 8, 8), 10), ("faces", 200, (1, 25, 25), 2)],
)
def test_builtin_datasets(spec, n, shape, classes):
    ds = load_dataset(spec)
    assert ds.name == spec
    assert len(ds) == n and ds.input_shape == shape and ds.num_classes == classes
    assert ds.x.dtype == np.float32 and ds.y.dtype == np.int64
    assert ds.x.shape == (n, *shape)
    assert 0.0 <= ds.x.min() and ds.x.max() == pytest.approx(1.0)
    assert set(np.unique(ds.y)) == set(range(classes))
    assert len(ds.class_names) == classes


def test_faces_labels_follow_skimage_order():
    # skimage: "100 first images are faces and subsequent 100 are non-faces".
    ds = load_dataset("faces")
    assert ds.class_names == ("non-face", "face")
    assert (ds.y[:100] == 1).all() and (ds.y[100:] == 0).all()


def test_builtin_returns_independent_copies():
    a = load_dataset("digits")
    a.x[0] = 5.0
    assert load_dataset("digits").x.max() == pytest.approx(1.0)


def test_limit_is_stratified_and_seeded():
    a = load_dataset("digits", limit=200, seed=3)
    b = load_dataset("digits", limit=200, seed=3)
    c = load_dataset("digits", limit=200, seed=4)
    assert len(a) == 200
    assert np.array_equal(a.x, b.x) and np.array_equal(a.y, b.y)
    assert not np.array_equal(a.x, c.x)
    assert a.class_counts().min() >= 19 and a.class_counts().max() <= 21


# --------------------------------------------------------------------------- spec errors

def test_unknown_name_lists_valid_ones():
    with pytest.raises(DataError) as e:
        load_dataset("imagenet")
    for name in DATASET_NAMES:
        assert name in str(e.value)


@pytest.mark.parametrize("spec", ["cifar10", "folder:", "npz:  "])
def test_path_datasets_need_a_path(spec):
    with pytest.raises(DataError, match="needs a path"):
        load_dataset(spec)


def test_builtin_rejects_path():
    with pytest.raises(DataError, match="takes no path"):
        load_dataset("digits:/tmp/x")


@pytest.mark.parametrize("kind", ["cifar10", "folder", "npz"])
def test_missing_path(tmp_path, kind):
    missing = tmp_path / "nope"
    with pytest.raises(DataError, match="does not exist"):
        load_dataset(f"{kind}:{missing}")


# --------------------------------------------------------------------------- Dataset

def test_dataset_validates_labels_and_counts():
    x = np.zeros((3, 1, 2, 2), np.float32)
    with pytest.raises(DataError, match="3 images but 2 labels"):
        Dataset(x, np.array([0, 1]), ("a", "b"), "t")
    with pytest.raises(DataError, match="labels must lie"):
        Dataset(x, np.array([0, 1, 2]), ("a", "b"), "t")
    with pytest.raises(DataError, match="4-D"):
        Dataset(np.zeros((3, 4)), np.array([0, 1, 0]), ("a", "b"), "t")


# --------------------------------------------------------------------------- split / batches

def test_split_is_deterministic_disjoint_and_stratified():
    ds = _toy()
    tr, va, te = split(ds, val=0.1, test=0.2, seed=7)
    tr2, va2, te2 = split(ds, val=0.1, test=0.2, seed=7)
    for a, b in ((tr, tr2), (va, va2), (te, te2)):
        assert np.array_equal(a.x, b.x) and np.array_equal(a.y, b.y)
    assert te.class_counts().tolist() == [2, 4, 6]
    assert va.class_counts().tolist() == [1, 2, 3]
    assert tr.class_counts().tolist() == [7, 14, 21]
    ids = [set(s.x[:, 0, 0, 0].tolist()) for s in (tr, va, te)]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    assert len(ids[0] | ids[1] | ids[2]) == len(ds)
    _, _, te3 = split(ds, val=0.1, test=0.2, seed=8)
    assert not np.array_equal(te.x, te3.x)
    assert tr.class_names == ds.class_names and tr.name == "toy/train"


def test_split_real_dataset_proportions():
    ds = load_dataset("mnist5k")
    tr, va, te = split(ds)
    assert (te.class_counts() == 100).all() and (va.class_counts() == 50).all()
    assert len(tr) == 3500


def test_split_rejects_bad_fractions():
    with pytest.raises(ValueError):
        split(_toy(), val=0.5, test=0.5)
    with pytest.raises(ValueError):
        split(_toy(), val=-0.1)


def test_split_zero_val_gives_empty_split():
    tr, va, te = split(_toy(), val=0.0, test=0.5)
    assert len(va) == 0 and len(tr) + len(te) == 60


def test_iterate_batches_covers_and_repeats():
    ds = _toy()
    seen = np.concatenate([xb[:, 0, 0, 0].numpy() for xb, _ in iterate_batches(ds, 7, shuffle=True, seed=1)])
    assert sorted(seen.tolist()) == sorted(ds.x[:, 0, 0, 0].tolist())
    again = np.concatenate([xb[:, 0, 0, 0].numpy() for xb, _ in iterate_batches(ds, 7, shuffle=True, seed=1)])
    assert np.array_equal(seen, again)
    assert not np.array_equal(seen, ds.x[:, 0, 0, 0])
    sizes = [len(yb) for _, yb in iterate_batches(ds, 7, drop_last=True)]
    assert sizes == [7] * 8


# --------------------------------------------------------------------------- CIFAR-10

def _cifar_batch(n, label_offset, rng):
    data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    labels = [(i + label_offset) % 10 for i in range(n)]
    return {b"batch_label": b"x", b"data": data, b"labels": labels,
            b"filenames": [b"f%d.png" % i for i in range(n)]}


@pytest.fixture
def cifar_dir(tmp_path):
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    rng = np.random.default_rng(0)
    batches = {"data_batch_1": _cifar_batch(4, 0, rng), "data_batch_2": _cifar_batch(3, 4, rng),
               "test_batch": _cifar_batch(2, 7, rng)}
    for name, b in batches.items():
        blob = pickle.dumps(b, protocol=2)  # the real files are Python-2 era pickles
        if name == "data_batch_1":  # ... whose arrays name numpy 1's module path
            blob = blob.replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")
            assert b"cnumpy.core.multiarray\n_reconstruct" in blob
        (root / name).write_bytes(blob)
    meta = {b"label_names": [n.encode() for n in dtmm.data.files.CIFAR10_CLASSES],
            b"num_cases_per_batch": 10000}
    with open(root / "batches.meta", "wb") as f:
        pickle.dump(meta, f, protocol=2)
    return root, batches


def test_cifar10_loads_dir_and_parent(cifar_dir):
    root, batches = cifar_dir
    for p in (root, root.parent):
        ds = load_dataset(f"cifar10:{p}")
        assert len(ds) == 9 and ds.input_shape == (3, 32, 32)
        assert ds.class_names[0] == "airplane" and ds.num_classes == 10
        assert ds.y.tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8]
    # pixel (row 5, col 7) of image 0: R at 5*32+7, G at 1024 + ..., B at 2048 + ...
    raw = batches["data_batch_1"][b"data"][0]
    for ch in range(3):
        assert ds.x[0, ch, 5, 7] == pytest.approx(raw[ch * 1024 + 5 * 32 + 7] / 255.0)
    # test_batch comes last
    assert ds.x[7, 2, 31, 31] == pytest.approx(batches["test_batch"][b"data"][0][3071] / 255.0)


def test_cifar10_without_meta_uses_standard_names(cifar_dir):
    root, _ = cifar_dir
    (root / "batches.meta").unlink()
    assert load_dataset(f"cifar10:{root}").class_names[9] == "truck"


def test_cifar10_truncated_pickle(cifar_dir):
    root, _ = cifar_dir
    blob = (root / "data_batch_2").read_bytes()
    (root / "data_batch_2").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DataError, match="data_batch_2"):
        load_dataset(f"cifar10:{root}")


def test_cifar10_refuses_code_in_pickle(cifar_dir, tmp_path):
    root, _ = cifar_dir
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    with open(root / "data_batch_1", "wb") as f:
        pickle.dump({b"data": Evil(), b"labels": []}, f)
    with pytest.raises(DataError, match="refusing"):
        load_dataset(f"cifar10:{root}")
    assert not marker.exists()


def test_cifar10_label_count_mismatch(cifar_dir):
    root, _ = cifar_dir
    b = _cifar_batch(3, 0, np.random.default_rng(1))
    b[b"labels"] = b[b"labels"][:2]
    with open(root / "data_batch_1", "wb") as f:
        pickle.dump(b, f)
    with pytest.raises(DataError, match="3 images but 2 labels"):
        load_dataset(f"cifar10:{root}")


def test_cifar10_wrong_keys_and_empty(cifar_dir, tmp_path):
    root, _ = cifar_dir
    with open(root / "data_batch_1", "wb") as f:
        pickle.dump({b"pixels": np.zeros((1, 3072), np.uint8)}, f)
    with pytest.raises(DataError, match="'data'"):
        load_dataset(f"cifar10:{root}")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="no data_batch"):
        load_dataset(f"cifar10:{empty}")


# --------------------------------------------------------------------------- folders

def _save(path, arr):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def test_folder_grey_and_rgb(tmp_path):
    g = tmp_path / "grey"
    _save(g / "b_dog" / "1.png", np.full((5, 6), 255, np.uint8))
    _save(g / "a_cat" / "1.png", np.zeros((5, 6), np.uint8))
    _save(g / "a_cat" / "2.bmp", np.full((5, 6), 51, np.uint8))
    (g / "a_cat" / "notes.txt").write_text("ignored")
    ds = load_dataset(f"folder:{g}")
    assert ds.class_names == ("a_cat", "b_dog")
    assert ds.input_shape == (1, 5, 6) and ds.y.tolist() == [0, 0, 1]
    assert ds.x[1].max() == pytest.approx(0.2) and ds.x[2].min() == pytest.approx(1.0)

    c = tmp_path / "rgb"
    img = np.zeros((4, 4, 3), np.uint8)
    img[..., 1] = 255
    _save(c / "x" / "0.png", img)
    _save(c / "y" / "0.jpg", img)
    ds = load_dataset(f"folder:{c}")
    assert ds.input_shape == (3, 4, 4)
    assert ds.x[0, 1].min() == pytest.approx(1.0) and ds.x[0, 0].max() == 0.0


def test_folder_size_mismatch_names_file(tmp_path):
    _save(tmp_path / "a" / "0.png", np.zeros((5, 5), np.uint8))
    _save(tmp_path / "b" / "0.png", np.zeros((6, 5), np.uint8))
    with pytest.raises(DataError, match=r"b[/\\]0\.png"):
        load_dataset(f"folder:{tmp_path}")


def test_folder_mode_mismatch_names_file(tmp_path):
    _save(tmp_path / "a" / "0.png", np.zeros((5, 5), np.uint8))
    _save(tmp_path / "a" / "1.png", np.zeros((5, 5, 3), np.uint8))
    with pytest.raises(DataError, match=r"1\.png.*channel"):
        load_dataset(f"folder:{tmp_path}")


def test_folder_empty_and_corrupt(tmp_path):
    (tmp_path / "a").mkdir()
    with pytest.raises(DataError, match="no images"):
        load_dataset(f"folder:{tmp_path}")
    (tmp_path / "a" / "bad.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="bad.png"):
        load_dataset(f"folder:{tmp_path}")
    with pytest.raises(DataError, match="no class subdirectories"):
        load_dataset(f"folder:{tmp_path / 'a'}")


# --------------------------------------------------------------------------- npz

@pytest.mark.parametrize(
    "shape, expect",
    [((4, 6, 5), (1, 6, 5)), ((4, 6, 5, 3), (3, 6, 5)), ((4, 6, 5, 1), (1, 6, 5)),
     ((4, 3, 6, 5), (3, 6, 5)), ((4, 1, 6, 5), (1, 6, 5))],
)
def test_npz_layouts(tmp_path, shape, expect):
    x = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    p = tmp_path / "d.npz"
    np.savez(p, x=x, y=np.array([0, 1, 1, 0]))
    ds = load_dataset(f"npz:{p}")
    assert ds.input_shape == expect and ds.name == "d"
    assert ds.x.max() <= 1.0
    if len(shape) == 4 and shape[3] in (1, 3):
        assert ds.x[2, -1, 4, 3] == pytest.approx(x[2, 4, 3, -1] / 255.0)


def test_npz_float_and_class_names(tmp_path):
    p = tmp_path / "f.npz"
    x = np.full((2, 1, 3, 3), 0.25, np.float64)
    np.savez(p, x=x, y=np.array([1.0, 0.0]), class_names=np.array(["no", "yes"]))
    ds = load_dataset(f"npz:{p}")
    assert ds.class_names == ("no", "yes") and ds.y.tolist() == [1, 0]
    assert ds.x.dtype == np.float32 and ds.x.max() == pytest.approx(0.25)


@pytest.mark.parametrize(
    "arrays, match",
    [({"images": np.zeros((2, 4, 4)), "y": np.zeros(2)}, "'x' and 'y'"),
     ({"x": np.zeros((3, 4, 4), np.uint8), "y": np.zeros(2, np.int64)}, "3 images but 2 labels"),
     ({"x": np.zeros((2, 5, 4, 4), np.uint8), "y": np.zeros(2, np.int64)}, "layout"),
     ({"x": np.zeros((0, 4, 4), np.uint8), "y": np.zeros(0, np.int64)}, "no images"),
     ({"x": np.zeros((2, 4, 4), np.uint8), "y": np.array([0.5, 1])}, "integer"),
     ({"x": np.zeros((2, 4, 4), np.uint8), "y": np.array([0, -1])}, "negative"),
     ({"x": np.full((2, 4, 4), np.nan), "y": np.array([0, 1])}, "NaN")],
)
def test_npz_errors(tmp_path, arrays, match):
    p = tmp_path / "bad.npz"
    np.savez(p, **arrays)
    with pytest.raises(DataError, match=match):
        load_dataset(f"npz:{p}")


def test_npz_corrupt_file(tmp_path):
    p = tmp_path / "c.npz"
    np.savez(p, x=np.zeros((2, 4, 4), np.uint8), y=np.array([0, 1]))
    p.write_bytes(p.read_bytes()[:40])
    with pytest.raises(DataError, match="cannot read"):
        load_dataset(f"npz:{p}")


# --------------------------------------------------------------------------- docstrings

@pytest.mark.parametrize("module", [dtmm.data, dtmm.data.dataset, dtmm.data.files, dtmm.data.builtin])
def test_docstring_examples(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0
