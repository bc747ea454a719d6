"""Tests for reprior.experiments.data: every loader, on built-in data and on small files made here."""

from __future__ import annotations

import ast
import csv
import pickle
import re
from pathlib import Path

import numpy as np
import pytest

from reprior.experiments.data import TARGET_OFFSET, Dataset, list_datasets, load_dataset

REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------
# Small files in the formats the loaders read
# ---------------------------------------------------------------------------

CIFAR_TRAIN_ROWS = 6  # per batch, five batches
CIFAR_TEST_ROWS = 5


def _cifar_rows(ids: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Rows of 3072 uint8 in the CIFAR layout (R plane, G plane, B plane, each row-major).

    Pixel (0, 0) of the red plane holds the image's id, so a loaded image can
    be traced back to the row it came from.
    """
    rows = rng.integers(0, 256, size=(len(ids), 3072), dtype=np.uint8)
    rows[:, 0] = ids
    return rows


def write_fake_cifar(root: Path, *, seed: int = 0) -> dict:
    """Tiny batches in the real pickle format: train ids 0..29, test ids 200..204."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    truth = {"train_rows": [], "train_labels": [], "test_rows": None, "test_labels": None}
    for b in range(5):
        ids = np.arange(b * CIFAR_TRAIN_ROWS, (b + 1) * CIFAR_TRAIN_ROWS)
        rows, labels = _cifar_rows(ids, rng), [int(i % 10) for i in ids]
        batch = {b"batch_label": f"training batch {b + 1} of 5".encode(), b"labels": labels,
                 b"data": rows, b"filenames": [f"img_{i}.png".encode() for i in ids]}
        (root / f"data_batch_{b + 1}").write_bytes(pickle.dumps(batch, protocol=2))
        truth["train_rows"].append(rows)
        truth["train_labels"] += labels
    ids = np.arange(200, 200 + CIFAR_TEST_ROWS)
    rows, labels = _cifar_rows(ids, rng), [int(i % 10) for i in ids]
    batch = {b"batch_label": b"testing batch 1 of 1", b"labels": labels, b"data": rows,
             b"filenames": [f"img_{i}.png".encode() for i in ids]}
    (root / "test_batch").write_bytes(pickle.dumps(batch, protocol=2))
    truth["train_rows"] = np.concatenate(truth["train_rows"])
    truth["train_labels"] = np.array(truth["train_labels"])
    truth["test_rows"], truth["test_labels"] = rows, np.array(labels)
    return truth


def write_npz(file: Path, *, num_rows: int = 40, in_dim: int = 3, split: bool = False, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    arrays = {"x": 5.0 + 3.0 * rng.normal(size=(num_rows, in_dim)), "y": -2.0 + 4.0 * rng.normal(size=num_rows)}
    if split:
        arrays["x_test"] = rng.normal(size=(7, in_dim))
        arrays["y_test"] = rng.normal(size=7)
    np.savez(file, **arrays)
    return arrays


def write_csv(file: Path, *, num_rows: int = 30, seed: int = 0) -> np.ndarray:
    """Columns a, b, c, target; returns the table (num_rows, 4)."""
    rng = np.random.default_rng(seed)
    table = np.column_stack([rng.normal(size=num_rows), 10 + rng.normal(size=num_rows),
                             rng.integers(0, 5, size=num_rows), 100 + 7 * rng.normal(size=num_rows)])
    with open(file, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["a", "b", "c", "target"])
        writer.writerows([[repr(float(v)) for v in row] for row in table])
    return table


@pytest.fixture
def sources(tmp_path):
    """load_dataset keyword arguments for every data set, files written into tmp_path."""
    write_fake_cifar(tmp_path / "cifar")
    write_npz(tmp_path / "arrays.npz")
    write_csv(tmp_path / "table.csv")
    return {
        "synthetic": {},
        "digits": {},
        "diabetes": {},
        "cifar10": {"path": tmp_path / "cifar", "n_train": 10, "n_test": 4},
        "npz": {"path": tmp_path / "arrays.npz"},
        "csv": {"path": tmp_path / "table.csv", "target_columns": ["target"]},
    }


ALL_NAMES = ["synthetic", "digits", "diabetes", "cifar10", "npz", "csv"]


def unstandardise(x: np.ndarray, stats: dict) -> np.ndarray:
    return x * stats["std"] + stats["mean"]


def assert_one_hot_minus_offset(y: np.ndarray, num_classes: int = 10) -> np.ndarray:
    """Each row is one 0.9 and the rest -0.1; returns the labels."""
    assert y.shape[1] == num_classes
    np.testing.assert_allclose(np.sort(y, axis=1)[:, :-1], -TARGET_OFFSET, rtol=0, atol=1e-12)
    np.testing.assert_allclose(y.max(axis=1), 1.0 - TARGET_OFFSET, rtol=0, atol=1e-12)
    return y.argmax(axis=1)


# ---------------------------------------------------------------------------
# Properties shared by every loader
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL_NAMES)
def test_every_loader_returns_float64_2d_targets(name, sources):
    ds = load_dataset(name, **sources[name])
    assert isinstance(ds, Dataset) and ds.name == name
    for arr in (ds.x_train, ds.y_train, ds.x_test, ds.y_test):
        assert arr.dtype == np.float64
        assert np.all(np.isfinite(arr))
    assert ds.y_train.ndim == ds.y_test.ndim == 2
    assert ds.y_train.shape == (ds.n_train, ds.out_dim) and ds.y_test.shape == (ds.n_test, ds.out_dim)
    assert ds.x_train.shape == (ds.n_train, *ds.in_shape) and ds.x_test.shape == (ds.n_test, *ds.in_shape)
    assert ds.n_train > 0 and ds.n_test > 0


@pytest.mark.parametrize("name", ALL_NAMES)
def test_same_seed_same_arrays_other_seed_other_arrays(name, sources):
    a = load_dataset(name, seed=3, **sources[name])
    b = load_dataset(name, seed=3, **sources[name])
    c = load_dataset(name, seed=4, **sources[name])
    for key in ("x_train", "y_train", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(a, key), getattr(b, key))
    assert not np.array_equal(a.x_train, c.x_train)
    assert not np.array_equal(a.x_test, c.x_test)
    if name != "synthetic":  # the rows chosen, not only their standardisation, depend on the seed
        np.testing.assert_array_equal(a.info["test_indices"], b.info["test_indices"])
        assert not np.array_equal(a.info["train_indices"], c.info["train_indices"])
        assert not np.array_equal(a.info["test_indices"], c.info["test_indices"])


@pytest.mark.parametrize("name", ["digits", "diabetes", "cifar10", "npz", "csv"])
def test_train_and_test_rows_are_disjoint(name, sources):
    ds = load_dataset(name, **sources[name])
    train, test = ds.info["train_indices"], ds.info["test_indices"]
    assert len(train) == ds.n_train and len(test) == ds.n_test
    assert len(set(train.tolist())) == len(train) and len(set(test.tolist())) == len(test)
    if ds.info["split"] == "permutation":  # one pool of rows: indices must not overlap
        assert not set(train.tolist()) & set(test.tolist())
    # No test input equals a training input (none of these sources has duplicate rows).
    flat_train, flat_test = ds.x_train.reshape(ds.n_train, -1), ds.x_test.reshape(ds.n_test, -1)
    assert not any(np.any(np.all(flat_train == row, axis=1)) for row in flat_test)


@pytest.mark.parametrize("name", ["digits", "diabetes", "npz", "csv"])
def test_too_many_points_name_the_argument_and_the_number_available(name, sources):
    kwargs = dict(sources[name])
    available = {"digits": 1797, "diabetes": 442, "npz": 40, "csv": 30}[name]
    with pytest.raises(ValueError, match=rf"`n_train`.*at most {available}\b.*received {available + 1}"):
        load_dataset(name, n_train=available + 1, **kwargs)
    with pytest.raises(ValueError, match=rf"`n_test`.*at most {available - 10}\b.*received {available - 9}"):
        load_dataset(name, n_train=10, n_test=available - 9, **kwargs)
    ds = load_dataset(name, n_train=10, n_test=available - 10, **kwargs)  # exactly all rows is fine
    assert (ds.n_train, ds.n_test) == (10, available - 10)


@pytest.mark.parametrize("name", ["digits", "diabetes", "csv"])
def test_test_set_does_not_depend_on_n_train(name, sources):
    small = load_dataset(name, n_train=5, n_test=8, **{k: v for k, v in sources[name].items()})
    large = load_dataset(name, n_train=20, n_test=8, **{k: v for k, v in sources[name].items()})
    np.testing.assert_array_equal(small.info["test_indices"], large.info["test_indices"])
    np.testing.assert_array_equal(small.info["train_indices"], large.info["train_indices"][:5])


# ---------------------------------------------------------------------------
# synthetic
# ---------------------------------------------------------------------------


def test_synthetic_defaults_and_options():
    ds = load_dataset("synthetic")
    assert (ds.n_train, ds.n_test, ds.in_shape, ds.out_dim) == (128, 64, (4,), 1)
    assert ds.image_shape is None
    ds = load_dataset("synthetic", n_train=7, n_test=3, in_dim=2, out_dim=5)
    assert ds.x_train.shape == (7, 2) and ds.y_train.shape == (7, 5) and ds.x_test.shape == (3, 2)


def test_synthetic_noise_has_the_requested_std():
    noise_std = 0.3
    ds = load_dataset("synthetic", n_train=5000, n_test=10, noise_std=noise_std)
    residual = ds.y_train - ds.info["f_train"]
    # The sample std of n Gaussians has sd about noise_std / sqrt(2 n) = 0.003; allow ~5 sd.
    assert abs(residual.std() - noise_std) < 0.015
    assert abs(residual.mean()) < 5 * noise_std / np.sqrt(5000)
    # The function carries signal of order one (a random-feature draw with Var f about 1).
    assert 0.2 < ds.info["f_train"].std() < 5.0


def test_synthetic_without_noise_is_the_function():
    ds = load_dataset("synthetic", noise_std=0.0)
    np.testing.assert_array_equal(ds.y_train, ds.info["f_train"])
    np.testing.assert_array_equal(ds.y_test, ds.info["f_test"])


def test_synthetic_is_smooth_and_nested_in_n_train():
    """Nearby inputs give nearby outputs; a larger n_train extends the same draw of the same function."""
    ds = load_dataset("synthetic", n_train=200, n_test=1, in_dim=1, noise_std=0.0)
    x, f = ds.x_train[:, 0], ds.info["f_train"][:, 0]
    dx, df = np.abs(x[:, None] - x[None]), np.abs(f[:, None] - f[None])
    close = (dx > 0) & (dx < 0.1)
    assert close.sum() > 100
    # For an RBF lengthscale of 1, E|df| is about 0.1 at distance < 0.1 and about 0.6 overall.
    assert df[close].mean() < 0.3 * df[dx > 0].mean()
    small = load_dataset("synthetic", n_train=50, n_test=1, in_dim=1, noise_std=0.0)
    np.testing.assert_array_equal(small.x_train, ds.x_train[:50])
    np.testing.assert_allclose(small.info["f_train"], ds.info["f_train"][:50], rtol=1e-12)


def test_synthetic_rejects_bad_options():
    with pytest.raises(ValueError, match="`in_dim`.*positive integer.*received 0"):
        load_dataset("synthetic", in_dim=0)
    with pytest.raises(ValueError, match="`noise_std`.*non-negative.*received -1"):
        load_dataset("synthetic", noise_std=-1.0)


# ---------------------------------------------------------------------------
# digits
# ---------------------------------------------------------------------------


def test_digits_images_targets_and_training_standardisation():
    from sklearn.datasets import load_digits

    ds = load_dataset("digits", n_train=300, n_test=100, seed=1)
    assert ds.image_shape == (8, 8, 1) and ds.x_train.shape == (300, 8, 8, 1) and ds.x_test.shape == (100, 8, 8, 1)
    stats = ds.info["standardisation"]["x"]
    assert stats["scheme"] == "per_pixel_mean_global_std" and stats["std"].shape == ()
    # Training statistics: every pixel has mean zero over the training images, and one global std of 1.
    np.testing.assert_allclose(ds.x_train.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(ds.x_train.std(), 1.0, rtol=1e-12)
    # Test inputs use the training statistics, not their own.
    assert np.abs(ds.x_test.mean(axis=0)).max() > 1e-3
    # Undoing the standardisation gives back the source pixels (0..16) and labels.
    bunch = load_digits()
    np.testing.assert_allclose(unstandardise(ds.x_train, stats)[..., 0], bunch.images[ds.info["train_indices"]],
                               atol=1e-10)
    np.testing.assert_allclose(unstandardise(ds.x_test, stats)[..., 0], bunch.images[ds.info["test_indices"]],
                               atol=1e-10)
    labels = assert_one_hot_minus_offset(ds.y_train)
    np.testing.assert_array_equal(labels, bunch.target[ds.info["train_indices"]])
    assert len(set(labels.tolist())) == 10
    np.testing.assert_array_equal(assert_one_hot_minus_offset(ds.y_test), bunch.target[ds.info["test_indices"]])


def test_digits_defaults_and_flatten():
    ds = load_dataset("digits")
    assert (ds.n_train, ds.n_test, ds.out_dim) == (256, 256, 10)
    flat = load_dataset("digits", flatten=True)
    assert flat.x_train.shape == (256, 64) and flat.image_shape is None and flat.info["image_shape"] == (8, 8, 1)
    np.testing.assert_array_equal(flat.x_train, ds.x_train.reshape(256, 64))
    np.testing.assert_array_equal(flat.as_images().x_test, ds.x_test)
    assert load_dataset("digits", flatten=False).x_train.shape == (256, 8, 8, 1)


def test_constant_pixels_do_not_divide_by_zero(tmp_path):
    """digits has pixels that are zero in every image; a std guard keeps them finite."""
    ds = load_dataset("diabetes", n_train=1, n_test=3)  # one row: every column has zero variance
    np.testing.assert_array_equal(ds.x_train, 0.0)
    np.testing.assert_array_equal(ds.info["standardisation"]["x"]["std"], 1.0)
    assert np.all(np.isfinite(ds.x_test))
    # Several rows, columns constant in them (all zero; all 5): std 1, so they become 0 in training.
    rng = np.random.default_rng(0)
    x = np.column_stack([rng.standard_normal(8), np.zeros(8), np.full(8, 5.0)])
    np.savez(tmp_path / "constant.npz", x=x, y=rng.standard_normal(8))
    ds = load_dataset("npz", path=tmp_path / "constant.npz", n_train=6, n_test=2)
    std = np.asarray(ds.info["standardisation"]["x"]["std"])
    np.testing.assert_array_equal(std[1:], 1.0)
    assert abs(std[0] - 1.0) > 1e-3  # the varying column is scaled by its own std
    np.testing.assert_array_equal(ds.x_train[:, 1:], 0.0)
    assert np.all(np.isfinite(ds.x_test))


# ---------------------------------------------------------------------------
# diabetes
# ---------------------------------------------------------------------------


def test_diabetes_standardised_with_training_statistics():
    from sklearn.datasets import load_diabetes

    ds = load_dataset("diabetes", n_train=200, n_test=100)
    assert ds.x_train.shape == (200, 10) and ds.y_train.shape == (200, 1) and ds.y_test.shape == (100, 1)
    assert ds.image_shape is None
    np.testing.assert_allclose(ds.x_train.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(ds.x_train.std(axis=0), 1.0, rtol=1e-12)
    np.testing.assert_allclose(ds.y_train.mean(), 0.0, atol=1e-12)
    np.testing.assert_allclose(ds.y_train.std(), 1.0, rtol=1e-12)
    assert abs(ds.y_test.mean()) > 1e-6  # test targets are not re-centred on their own mean
    raw = load_diabetes(scaled=False)
    stats = ds.info["standardisation"]
    np.testing.assert_allclose(unstandardise(ds.x_test, stats["x"]), raw.data[ds.info["test_indices"]], rtol=1e-12)
    np.testing.assert_allclose(unstandardise(ds.y_train, stats["y"])[:, 0], raw.target[ds.info["train_indices"]],
                               rtol=1e-12)


# ---------------------------------------------------------------------------
# cifar10
# ---------------------------------------------------------------------------


def test_cifar10_layout_split_and_standardisation(tmp_path):
    truth = write_fake_cifar(tmp_path / "cifar")
    ds = load_dataset("cifar10", path=tmp_path / "cifar", n_train=12, n_test=4, seed=2)
    assert ds.image_shape == (32, 32, 3) and ds.x_train.shape == (12, 32, 32, 3) and ds.x_test.shape == (4, 32, 32, 3)
    assert ds.info["split"] == "official"
    stats = ds.info["standardisation"]["x"]
    assert stats["scheme"] == "per_channel" and stats["mean"].shape == (3,)
    np.testing.assert_allclose(ds.x_train.mean(axis=(0, 1, 2)), 0.0, atol=1e-12)
    np.testing.assert_allclose(ds.x_train.std(axis=(0, 1, 2)), 1.0, rtol=1e-12)
    # Pixels scaled to [0, 1]; channel c of the image is the c-th plane of 1024 bytes, row-major.
    pixels = np.rint(unstandardise(ds.x_train, stats) * 255).astype(int)
    rows = truth["train_rows"][ds.info["train_indices"]].astype(int)
    np.testing.assert_array_equal(pixels, rows.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
    assert pixels[0, 0, 1, 0] == rows[0, 1] and pixels[0, 1, 0, 0] == rows[0, 32] and pixels[0, 0, 0, 1] == rows[0, 1024]
    # Training points come from data_batch_*, test points from test_batch (ids 200..).
    assert set(pixels[:, 0, 0, 0].tolist()) <= set(range(30)) and len(set(pixels[:, 0, 0, 0].tolist())) == 12
    test_ids = np.rint(unstandardise(ds.x_test, stats) * 255)[:, 0, 0, 0].astype(int)
    assert set(test_ids.tolist()) <= set(range(200, 205)) and len(set(test_ids.tolist())) == 4
    np.testing.assert_array_equal(assert_one_hot_minus_offset(ds.y_train), truth["train_labels"][ds.info["train_indices"]])
    np.testing.assert_array_equal(assert_one_hot_minus_offset(ds.y_test), truth["test_labels"][ds.info["test_indices"]])


def test_cifar10_defaults_are_capped_by_what_is_on_disk(tmp_path):
    write_fake_cifar(tmp_path / "cifar")
    ds = load_dataset("cifar10", path=str(tmp_path / "cifar"))
    assert (ds.n_train, ds.n_test) == (5 * CIFAR_TRAIN_ROWS, CIFAR_TEST_ROWS)
    with pytest.raises(ValueError, match=r"`n_train`.*at most 30\b.*received 31"):
        load_dataset("cifar10", path=tmp_path / "cifar", n_train=31)
    with pytest.raises(ValueError, match=r"`n_test`.*at most 5\b.*received 6"):
        load_dataset("cifar10", path=tmp_path / "cifar", n_test=6)
    assert load_dataset("cifar10", path=tmp_path / "cifar", flatten=True).x_train.shape == (30, 3072)


def test_cifar10_missing_directory_or_batch(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing)) + ".*does not exist"):
        load_dataset("cifar10", path=missing)
    write_fake_cifar(tmp_path / "cifar")
    (tmp_path / "cifar" / "data_batch_3").unlink()
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "cifar")) + ".*lacks data_batch_3"):
        load_dataset("cifar10", path=tmp_path / "cifar")
    with pytest.raises(ValueError, match="`path`.*received None"):
        load_dataset("cifar10")


def test_cifar10_malformed_batch(tmp_path):
    write_fake_cifar(tmp_path / "cifar")
    (tmp_path / "cifar" / "test_batch").write_bytes(pickle.dumps({b"data": np.zeros((2, 10), np.uint8),
                                                                   b"labels": [0, 1]}))
    with pytest.raises(ValueError, match=r"test_batch.*\(N, 3072\)"):
        load_dataset("cifar10", path=tmp_path / "cifar")
    (tmp_path / "cifar" / "test_batch").write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match="test_batch.*could not unpickle"):
        load_dataset("cifar10", path=tmp_path / "cifar")


# ---------------------------------------------------------------------------
# npz
# ---------------------------------------------------------------------------


def test_npz_pooled_split_and_standardisation(tmp_path):
    arrays = write_npz(tmp_path / "a.npz")
    ds = load_dataset("npz", path=tmp_path / "a.npz")
    assert (ds.n_train, ds.n_test) == (32, 8)  # default: a fifth of the 40 rows for testing
    assert ds.x_train.shape == (32, 3) and ds.y_train.shape == (32, 1) and ds.info["split"] == "permutation"
    np.testing.assert_allclose(ds.x_train.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(ds.y_train.std(axis=0), 1.0, rtol=1e-12)
    raw = load_dataset("npz", path=tmp_path / "a.npz", standardise=False)
    np.testing.assert_array_equal(raw.x_train, arrays["x"][raw.info["train_indices"]])
    np.testing.assert_array_equal(raw.y_test[:, 0], arrays["y"][raw.info["test_indices"]])
    assert raw.info["standardisation"] == {}


def test_npz_pre_split(tmp_path):
    arrays = write_npz(tmp_path / "a.npz", split=True)
    ds = load_dataset("npz", path=tmp_path / "a.npz", standardise=False)
    assert ds.info["split"] == "official" and (ds.n_train, ds.n_test) == (40, 7)
    np.testing.assert_array_equal(ds.x_test, arrays["x_test"][ds.info["test_indices"]])
    sub = load_dataset("npz", path=tmp_path / "a.npz", n_train=40, n_test=7)  # all 40 training rows allowed
    assert sub.n_train == 40
    with pytest.raises(ValueError, match=r"`n_test`.*at most 7\b"):
        load_dataset("npz", path=tmp_path / "a.npz", n_test=8)


def test_npz_images_and_custom_keys(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "img.npz", images=rng.normal(size=(20, 4, 5)), labels=rng.normal(size=(20, 2)))
    ds = load_dataset("npz", path=tmp_path / "img.npz", x_key="images", y_key="labels", n_train=12, n_test=6)
    assert ds.image_shape == (4, 5, 1) and ds.x_train.shape == (12, 4, 5, 1) and ds.y_train.shape == (12, 2)
    assert ds.info["standardisation"]["x"]["scheme"] == "per_channel"
    flat = load_dataset("npz", path=tmp_path / "img.npz", x_key="images", y_key="labels", flatten=True)
    assert flat.x_train.ndim == 2 and flat.x_train.shape[1] == 20


def test_npz_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "none.npz"))):
        load_dataset("npz", path=tmp_path / "none.npz")
    write_npz(tmp_path / "a.npz")
    with pytest.raises(ValueError, match=r"`x_key`.*keys: x, y.*received 'inputs'"):
        load_dataset("npz", path=tmp_path / "a.npz", x_key="inputs")
    np.savez(tmp_path / "half.npz", x=np.ones((4, 2)), y=np.ones(4), x_test=np.ones((2, 2)))
    with pytest.raises(ValueError, match="`y_test_key`"):
        load_dataset("npz", path=tmp_path / "half.npz")
    np.savez(tmp_path / "rows.npz", x=np.ones((4, 2)), y=np.ones(5))
    with pytest.raises(ValueError, match="`y`.*4 rows"):
        load_dataset("npz", path=tmp_path / "rows.npz")
    np.savez(tmp_path / "nan.npz", x=np.full((4, 2), np.nan), y=np.ones(4))
    with pytest.raises(ValueError, match="`x`.*finite"):
        load_dataset("npz", path=tmp_path / "nan.npz")
    (tmp_path / "junk.npz").write_text("not an archive")
    with pytest.raises(ValueError, match="`path`.*npz"):
        load_dataset("npz", path=tmp_path / "junk.npz")


# ---------------------------------------------------------------------------
# csv
# ---------------------------------------------------------------------------


def test_csv_columns_and_standardisation(tmp_path):
    table = write_csv(tmp_path / "t.csv")
    ds = load_dataset("csv", path=tmp_path / "t.csv", target_columns=["target"], n_train=20, n_test=10)
    assert ds.x_train.shape == (20, 3) and ds.y_train.shape == (20, 1)
    assert ds.info["input_columns"] == ["a", "b", "c"]
    np.testing.assert_allclose(ds.x_train.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(ds.x_train.std(axis=0), 1.0, rtol=1e-12)
    np.testing.assert_allclose(ds.y_train.mean(), 0.0, atol=1e-12)
    raw = load_dataset("csv", path=tmp_path / "t.csv", target_columns="target", input_columns=["c", "a"],
                       standardise=False, n_train=20, n_test=10)
    np.testing.assert_array_equal(raw.x_train, table[raw.info["train_indices"]][:, [2, 0]])
    np.testing.assert_array_equal(raw.y_test[:, 0], table[raw.info["test_indices"], 3])
    two = load_dataset("csv", path=tmp_path / "t.csv", target_columns=["target", "b"])
    assert two.out_dim == 2 and two.in_shape == (2,)


def test_csv_errors(tmp_path):
    write_csv(tmp_path / "t.csv")
    with pytest.raises(ValueError, match="`target_columns`.*received None"):
        load_dataset("csv", path=tmp_path / "t.csv")
    with pytest.raises(ValueError, match=r"`target_columns`.*its columns: a, b, c, target.*\['price'\]"):
        load_dataset("csv", path=tmp_path / "t.csv", target_columns=["price"])
    with pytest.raises(ValueError, match=r"`input_columns`.*\['d'\]"):
        load_dataset("csv", path=tmp_path / "t.csv", target_columns=["target"], input_columns=["a", "d"])
    with pytest.raises(ValueError, match="`input_columns`.*not a target"):
        load_dataset("csv", path=tmp_path / "t.csv", target_columns=["target"], input_columns=["a", "target"])
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "none.csv"))):
        load_dataset("csv", path=tmp_path / "none.csv", target_columns=["target"])
    (tmp_path / "bad.csv").write_text("a,target\n1.0,2.0\n3.0,oops\n")
    with pytest.raises(ValueError, match=r"line 3, column 'target'.*'oops'"):
        load_dataset("csv", path=tmp_path / "bad.csv", target_columns=["target"])
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(ValueError, match="empty"):
        load_dataset("csv", path=tmp_path / "empty.csv", target_columns=["target"])


# ---------------------------------------------------------------------------
# load_dataset arguments, list_datasets, Dataset
# ---------------------------------------------------------------------------


def test_unknown_name_lists_the_choices():
    with pytest.raises(ValueError, match=r"`name`.*'synthetic'.*'digits'.*'cifar10'.*'csv'.*received 'mnist'"):
        load_dataset("mnist")


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"n_train": 0}, "`n_train`.*positive integer"),
        ({"n_train": 2.5}, "`n_train`.*positive integer"),
        ({"n_test": -1}, "`n_test`.*non-negative integer"),
        ({"seed": -1}, "`seed`.*non-negative integer"),
        ({"flatten": "yes"}, "`flatten`.*None, True or False"),
        ({"flatten": False}, "`flatten`.*no image inputs"),
        ({"path": "somewhere"}, "`path`.*None for the built-in"),
    ],
)
def test_bad_arguments_are_named(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        load_dataset("diabetes", **kwargs)


def test_unknown_option_is_a_type_error():
    with pytest.raises(TypeError, match=r"argument `options`: expected options of data set 'digits' \(none\), received 'in_dim'"):
        load_dataset("digits", in_dim=3)
    with pytest.raises(TypeError, match="options of data set 'synthetic'.*in_dim, out_dim.*received 'x_key'"):
        load_dataset("synthetic", x_key="x")


def test_n_test_zero_gives_an_empty_test_set():
    ds = load_dataset("diabetes", n_train=442, n_test=0)
    assert ds.n_test == 0 and ds.x_test.shape == (0, 10) and ds.y_test.shape == (0, 1)
    images = load_dataset("digits", n_train=5, n_test=0)  # images, flattened and back
    flat = images.flattened()
    assert flat.x_train.shape == (5, 64) and flat.x_test.shape == (0, 64)
    assert flat.as_images().x_test.shape == (0, *images.image_shape)
    assert load_dataset("digits", n_train=5, n_test=0, flatten=True).x_test.shape == (0, 64)


def test_list_datasets_describes_every_loader():
    listing = list_datasets()
    assert [d["name"] for d in listing] == ALL_NAMES
    by_name = {d["name"]: d for d in listing}
    assert {n for n, d in by_name.items() if d["needs_path"]} == {"cifar10", "npz", "csv"}
    assert (by_name["synthetic"]["default_n_train"], by_name["synthetic"]["default_n_test"]) == (128, 64)
    assert by_name["synthetic"]["options"] == {"in_dim": 4, "out_dim": 1, "noise_std": 0.1, "num_features": 32}
    assert by_name["digits"]["image_shape"] == (8, 8, 1) and by_name["cifar10"]["image_shape"] == (32, 32, 3)
    assert all(isinstance(d["description"], str) and d["description"] for d in listing)
    by_name["synthetic"]["options"]["in_dim"] = 99  # the listing is a copy
    assert list_datasets()[0]["options"]["in_dim"] == 4
    for d in listing:  # the defaults listed are the ones load_dataset uses
        if not d["needs_path"]:
            ds = load_dataset(d["name"])
            assert (ds.n_train, ds.n_test) == (d["default_n_train"], d["default_n_test"])


def test_dataset_converts_and_checks():
    ds = Dataset("toy", np.ones((3, 2), np.float32), np.zeros((3, 1), np.int32), np.ones((1, 2)), np.zeros((1, 1)))
    assert ds.x_train.dtype == ds.y_train.dtype == np.float64
    assert (ds.n_train, ds.n_test, ds.out_dim, ds.in_shape) == (3, 1, 1, (2,))
    assert repr(ds) == "Dataset(name='toy', n_train=3, n_test=1, in_shape=(2,), out_dim=1, image_shape=None)"
    with pytest.raises(ValueError, match="`y_train`.*2-D"):
        Dataset("toy", np.ones((3, 2)), np.zeros(3), np.ones((1, 2)), np.zeros((1, 1)))
    with pytest.raises(ValueError, match="`y_train`.*3 rows"):
        Dataset("toy", np.ones((3, 2)), np.zeros((4, 1)), np.ones((1, 2)), np.zeros((1, 1)))
    with pytest.raises(ValueError, match="`x_test`"):
        Dataset("toy", np.ones((3, 2)), np.zeros((3, 1)), np.ones((1, 5)), np.zeros((1, 1)))
    with pytest.raises(ValueError, match="`image_shape`"):
        Dataset("toy", np.ones((3, 2, 2, 1)), np.zeros((3, 1)), np.ones((1, 2, 2, 1)), np.zeros((1, 1)),
                image_shape=(2, 3, 1))
    with pytest.raises(ValueError, match="`x_train`.*finite"):
        Dataset("toy", np.full((3, 2), np.inf), np.zeros((3, 1)), np.ones((1, 2)), np.zeros((1, 1)))
    with pytest.raises(AttributeError):
        ds.name = "other"  # frozen


def test_flattened_and_as_images_round_trip():
    x = np.arange(2 * 3 * 4 * 2, dtype=float).reshape(2, 3, 4, 2)
    ds = Dataset("img", x, np.zeros((2, 1)), x[:1] + 1, np.zeros((1, 1)), image_shape=(3, 4, 2))
    flat = ds.flattened()
    assert flat.x_train.shape == (2, 24) and flat.x_test.shape == (1, 24)
    assert flat.image_shape is None and flat.info["image_shape"] == (3, 4, 2)
    back = flat.as_images()
    assert back.image_shape == (3, 4, 2) and "image_shape" not in back.info
    np.testing.assert_array_equal(back.x_train, x)
    np.testing.assert_array_equal(back.x_test, x[:1] + 1)
    assert ds.as_images() is ds and flat.flattened() is flat
    tabular = Dataset("tab", np.ones((2, 3)), np.zeros((2, 1)), np.ones((1, 3)), np.zeros((1, 1)))
    with pytest.raises(ValueError, match="`image_shape`.*'tab' has no image inputs"):
        tabular.as_images()


# ---------------------------------------------------------------------------
# Module hygiene and documentation
# ---------------------------------------------------------------------------


def test_data_is_a_leaf_module_without_jax():
    """Only NumPy, the standard library and reprior._util.checks at module level; scikit-learn only inside loaders."""
    tree = ast.parse((REPO / "reprior" / "experiments" / "data.py").read_text())
    allowed = {"__future__", "csv", "io", "pickle", "dataclasses", "pathlib", "typing", "numpy",
               "reprior._util.checks"}
    top_level = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            top_level |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "reprior":
            top_level |= {f"{node.module}.{a.name}" for a in node.names}  # the package's own: by full name
        elif isinstance(node, ast.ImportFrom):
            top_level |= {node.module.split(".")[0]} if node.module else {a.name for a in node.names}
    assert top_level <= allowed, top_level - allowed
    everywhere = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                  for alias in node.names}
    everywhere |= {node.module.split(".")[0] for node in ast.walk(tree)
                   if isinstance(node, ast.ImportFrom) and node.module}
    assert "jax" not in everywhere and "sklearn" not in top_level


def test_docs_examples_run(tmp_path, monkeypatch):
    """Every ```python block in docs/data.md runs as written (in a scratch directory)."""
    page = (REPO / "docs" / "data.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", page, flags=re.S)
    assert blocks, "docs/data.md has no python examples"
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, "docs/data.md", "exec"), namespace)
    for name in ALL_NAMES:  # the page documents every data set
        assert f'"{name}"' in page
