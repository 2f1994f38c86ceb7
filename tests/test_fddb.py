"""The FDDB loader on tiny files in FDDB's own layout and ellipse format, written by the test."""
from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from dtmm.data import DetectionDataset, load_dataset, load_fddb, split
from dtmm.data.fddb import ellipse_to_box, parse_ellipse_list
from dtmm.errors import DataError


def _write_fddb(root, *, extra_fold_text=None):
    """Two folds, three images (one grey, one in a folder without 'originalPics')."""
    rng = np.random.default_rng(0)
    pics = root / "originalPics"
    imgs = {"2002/08/11/big/img_591": (40, 30, "RGB"), "2002/08/26/big/img_265": (64, 48, "L"),
            "2003/01/13/big/img_1": (50, 50, "RGB")}
    for name, (w, h, mode) in imgs.items():
        p = pics / (name + ".jpg")
        p.parent.mkdir(parents=True, exist_ok=True)
        shape = (h, w, 3) if mode == "RGB" else (h, w)
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(p, quality=95)
    folds = root / "FDDB-folds"
    folds.mkdir()
    (folds / "FDDB-fold-01-ellipseList.txt").write_text(
        "2002/08/11/big/img_591\n"
        "1\n"
        "10.0 6.0 1.570796 20.0 15.0  1\n"            # upright: 12 wide, 20 high
        "2002/08/26/big/img_265\n"
        "2\n"
        "8.0 4.0 0.0 10.0 10.0 1\n"                   # lying: 16 wide, 8 high
        "20.0 10.0 0.7853981634 60.0 40.0\n")        # 45 degrees, cut by the right/bottom edge
    (folds / "FDDB-fold-02-ellipseList.txt").write_text(
        extra_fold_text if extra_fold_text is not None else
        "2003/01/13/big/img_1\n0\n")
    return imgs


def test_ellipse_to_box_is_the_tight_box_of_the_rotated_ellipse():
    assert ellipse_to_box(10, 6, 0.0, 0, 0) == pytest.approx((-10, -6, 10, 6))
    assert ellipse_to_box(10, 6, math.pi / 2, 0, 0) == pytest.approx((-6, -10, 6, 10))
    a, b, t = 20.0, 10.0, 0.6
    x1, y1, x2, y2 = ellipse_to_box(a, b, t, 5.0, -3.0)
    s = np.linspace(0, 2 * np.pi, 200001)                      # the ellipse, sampled
    px = 5.0 + a * np.cos(s) * np.cos(t) - b * np.sin(s) * np.sin(t)
    py = -3.0 + a * np.cos(s) * np.sin(t) + b * np.sin(s) * np.cos(t)
    assert (x1, y1, x2, y2) == pytest.approx((px.min(), py.min(), px.max(), py.max()), abs=1e-6)


def test_load_fddb_boxes_scaled_and_folds_as_groups(tmp_path):
    _write_fddb(tmp_path)
    ds = load_fddb(tmp_path, size=32, progress=False)
    assert isinstance(ds, DetectionDataset) and len(ds) == 3 and ds.input_shape == (3, 32, 32)
    assert ds.groups.tolist() == [0, 0, 1] and ds.class_names == ("face",)
    # image 0: 40x30 -> 32x32; ellipse box (14, 5, 26, 25)
    assert np.allclose(ds.boxes[0], [[14 * 32 / 40, 5 * 32 / 30, 26 * 32 / 40, 25 * 32 / 30]],
                       atol=1e-4)
    # image 1: 64x48; the lying ellipse (2, 6, 18, 14); the 45-degree one clipped to the image
    hw = math.sqrt((20 * math.cos(math.pi / 4)) ** 2 + (10 * math.sin(math.pi / 4)) ** 2)
    want = [[2 / 2, 6 * 32 / 48, 18 / 2, 14 * 32 / 48],
            [(60 - hw) / 2, (40 - hw) * 32 / 48, 64 / 2, 48 * 32 / 48]]
    assert np.allclose(ds.boxes[1], want, atol=1e-4)
    assert ds.boxes[2].shape == (0, 4)
    # the grey picture is replicated into 3 channels, values in [0, 1]
    assert np.array_equal(ds.x[1, 0], ds.x[1, 1]) and 0.0 <= ds.x.min() and ds.x.max() <= 1.0
    grey = load_fddb(tmp_path, size=32, channels=1, folds=[2], progress=False)
    assert grey.input_shape == (1, 32, 32) and len(grey) == 1
    via_spec = load_dataset(f"fddb:{tmp_path}")
    assert via_spec.input_shape == (3, 112, 112) and via_spec.n_boxes == 3
    tr, _, te = split(via_spec, val=0.0, test=0.3, seed=0)
    assert not set(tr.groups) & set(te.groups)


def test_images_found_without_originalpics(tmp_path):
    _write_fddb(tmp_path)
    (tmp_path / "originalPics").rename(tmp_path / "pics")
    for p in (tmp_path / "pics").iterdir():
        p.rename(tmp_path / p.name)
    assert len(load_fddb(tmp_path, size=16, progress=False)) == 3


@pytest.mark.parametrize("text,match", [
    ("2003/01/13/big/img_1\nx\n", r"fold-02-ellipseList.txt:2: face count 'x'"),
    ("2003/01/13/big/img_1\n1\n1 2 3\n", r":3: an ellipse line holds"),
    ("2003/01/13/big/img_1\n2\n5 3 0 10 10 1\n", r"file ends where an ellipse"),
    ("2003/01/13/big/img_1\n1\n-5 3 0 10 10 1\n", r"radii must be > 0"),
    ("../../etc/passwd\n0\n", r"must be relative, without '\.\.'"),
    ("2003/01/13/big/nope\n0\n", r"image '2003/01/13/big/nope' not found"),
])
def test_malformed_files_name_file_and_line(tmp_path, text, match):
    _write_fddb(tmp_path, extra_fold_text=text)
    with pytest.raises(DataError, match=match):
        load_fddb(tmp_path, progress=False)


def test_missing_layout(tmp_path):
    with pytest.raises(DataError, match="no FDDB-folds directory"):
        load_fddb(tmp_path)
    (tmp_path / "FDDB-folds").mkdir()
    with pytest.raises(DataError, match="no FDDB-fold-XX-ellipseList.txt"):
        load_fddb(tmp_path)
    _write_fddb(tmp_path / "x")
    with pytest.raises(DataError, match=r"fold\(s\) \[3\]"):
        load_fddb(tmp_path / "x", folds=[3])
    bad = tmp_path / "x" / "originalPics" / "2003/01/13/big/img_1.jpg"
    bad.write_bytes(b"not a jpeg")
    with pytest.raises(DataError, match="cannot read image"):
        load_fddb(tmp_path / "x", progress=False)


def test_parse_ellipse_list_skips_blank_lines(tmp_path):
    p = tmp_path / "l.txt"
    p.write_text("\n\na/b\n1\n\n3 2 0.1 5 6\n\nc/d\n0\n")
    assert parse_ellipse_list(p) == [("a/b", [(3.0, 2.0, 0.1, 5.0, 6.0)]), ("c/d", [])]
