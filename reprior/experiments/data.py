"""Data sets: built-in ones and loaders for files already on disk.

Nothing here touches the network.  Built in are a seeded synthetic regression
problem, scikit-learn's ``digits`` (8x8 images, ten classes) and ``diabetes``
(tabular regression).  The loaders read CIFAR-10 in its standard python-batch
layout, ``.npz`` archives and ``.csv`` tables that the user already has.

Every loader returns a :class:`Dataset` of float64 NumPy arrays with 2-D
targets ``y: (n, out_dim)``.  Inputs are ``(n, in_dim)`` for tabular data and
``(n, H, W, C)`` for images.  Standardisation statistics are computed from the
*training* points only and stored in ``Dataset.info``, so predictions can be
mapped back to the original units.

Classification targets are one-hot vectors minus 0.1, so the true class is
0.9 and the others -0.1 (Hron et al. 2022, following Lee et al. 2018): a
regression target for a Gaussian likelihood with zero mean over the classes
close to zero.

This module is a leaf: it imports NumPy, the standard library and
:mod:`reprior._util.checks`, and imports scikit-learn lazily inside the loaders that
need it.  It never imports JAX.
"""

from __future__ import annotations

import csv
import io
import pickle
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, NamedTuple

import numpy as np

from reprior._util import checks as _checks

__all__ = ["TARGET_OFFSET", "Dataset", "list_datasets", "load_dataset"]

TARGET_OFFSET = 0.1
"""Subtracted from one-hot classification targets (Hron et al. 2022)."""

_CIFAR_TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
_CIFAR_TEST_FILE = "test_batch"
_CIFAR_SHAPE = (32, 32, 3)
_NUM_CLASSES = 10


# ---------------------------------------------------------------------------
# The container
# ---------------------------------------------------------------------------


@dataclass(frozen=True, eq=False, repr=False)
class Dataset:
    """A train/test split of float64 arrays.

    Parameters
    ----------
    name:
        The data set's name, as passed to :func:`load_dataset`.
    x_train, x_test:
        Inputs, ``(n_train, *in_shape)`` and ``(n_test, *in_shape)``:
        ``(n, in_dim)`` for tabular data, ``(n, H, W, C)`` for images.
    y_train, y_test:
        Targets, ``(n_train, out_dim)`` and ``(n_test, out_dim)``.  Always 2-D.
    image_shape:
        ``(H, W, C)`` when the inputs are images laid out as such, else None.
    info:
        Provenance: ``source``, ``split`` (``"official"`` or ``"permutation"``),
        ``seed``, the source row indices ``train_indices``/``test_indices``,
        ``standardisation`` (a dict of the training statistics) and, after
        :meth:`flattened`, the ``image_shape`` needed to undo it.

    Arrays are converted to float64 and checked (finite, matching rows, 2-D
    targets).  Equality is identity: compare arrays explicitly.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    image_shape: tuple[int, int, int] | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise _checks.fail("name", "a non-empty string", self.name)
        for key in ("x_train", "y_train", "x_test", "y_test"):
            arr = _checks.finite_array(key, getattr(self, key))
            object.__setattr__(self, key, np.asarray(arr, dtype=np.float64))
        for key in ("x_train", "x_test"):
            if getattr(self, key).ndim < 2:
                raise _checks.fail(key, "an array of shape (n, ...) with at least 2 dimensions",
                                   f"shape {getattr(self, key).shape}")
        for key in ("y_train", "y_test"):
            if getattr(self, key).ndim != 2:
                raise _checks.fail(key, "a 2-D array of shape (n, out_dim)", f"shape {getattr(self, key).shape}")
        _checks.matching_rows(("x_train", "y_train"), self.x_train, self.y_train)
        _checks.matching_rows(("x_test", "y_test"), self.x_test, self.y_test)
        if self.x_test.shape[1:] != self.x_train.shape[1:]:
            raise _checks.fail("x_test", f"inputs of shape (n, {_dims(self.x_train.shape[1:])}) like `x_train`",
                               f"shape {self.x_test.shape}")
        if self.y_test.shape[1] != self.y_train.shape[1]:
            raise _checks.fail("y_test", f"{self.y_train.shape[1]} columns like `y_train`", f"shape {self.y_test.shape}")
        if self.image_shape is not None:
            shape = _image_shape("image_shape", self.image_shape)
            if self.x_train.shape[1:] != shape:
                raise _checks.fail("image_shape", f"the shape of one input, {self.x_train.shape[1:]}", self.image_shape)
            object.__setattr__(self, "image_shape", shape)
        if not isinstance(self.info, dict):
            raise _checks.fail("info", "a dict", self.info)
        object.__setattr__(self, "info", dict(self.info))

    @property
    def out_dim(self) -> int:
        """Number of target columns."""
        return int(self.y_train.shape[1])

    @property
    def n_train(self) -> int:
        """Number of training points."""
        return int(self.x_train.shape[0])

    @property
    def n_test(self) -> int:
        """Number of test points."""
        return int(self.x_test.shape[0])

    @property
    def in_shape(self) -> tuple[int, ...]:
        """Shape of one input: ``(in_dim,)`` or ``(H, W, C)``."""
        return tuple(int(d) for d in self.x_train.shape[1:])

    def flattened(self) -> Dataset:
        """The same data with inputs reshaped to ``(n, -1)``.

        ``image_shape`` becomes None and is kept as ``info["image_shape"]`` so
        that :meth:`as_images` can undo the reshape.  Tabular data is returned
        unchanged.
        """
        if self.x_train.ndim == 2:
            return self
        info = dict(self.info)
        if self.image_shape is not None:
            info["image_shape"] = self.image_shape
        return replace(
            self,
            x_train=self.x_train.reshape(self.n_train, -1),
            x_test=self.x_test.reshape(self.n_test, self.x_train[0].size),  # also for n_test = 0
            image_shape=None,
            info=info,
        )

    def as_images(self) -> Dataset:
        """The same data with inputs of shape ``(n, H, W, C)``.

        Raises ValueError when the data set has no image shape (neither
        ``image_shape`` nor ``info["image_shape"]``), i.e. its inputs are not images.
        """
        shape = self.image_shape if self.image_shape is not None else self.info.get("image_shape")
        if shape is None:
            raise _checks.fail("image_shape", f"an (H, W, C) tuple, but data set {self.name!r} has no image inputs", None)
        if self.image_shape is not None:
            return self
        shape = _image_shape("info['image_shape']", shape)
        if int(np.prod(shape)) != self.x_train[0].size:
            raise _checks.fail("info['image_shape']", f"a shape with {self.x_train[0].size} entries", shape)
        info = {k: v for k, v in self.info.items() if k != "image_shape"}
        return replace(
            self,
            x_train=self.x_train.reshape((self.n_train, *shape)),
            x_test=self.x_test.reshape((self.n_test, *shape)),
            image_shape=shape,
            info=info,
        )

    def __repr__(self) -> str:
        return (f"Dataset(name={self.name!r}, n_train={self.n_train}, n_test={self.n_test}, "
                f"in_shape={self.in_shape}, out_dim={self.out_dim}, image_shape={self.image_shape})")


def _dims(shape) -> str:
    return ", ".join(str(d) for d in shape)


def _image_shape(name: str, value) -> tuple[int, int, int]:
    try:
        shape = tuple(int(d) for d in value)
        ok = len(shape) == 3 and all(d > 0 and d == v for d, v in zip(shape, value))
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise _checks.fail(name, "an (H, W, C) tuple of positive integers", value)
    return shape


# ---------------------------------------------------------------------------
# The registry and the public entry points
# ---------------------------------------------------------------------------


class _Spec(NamedTuple):
    loader: Callable[..., Dataset]
    description: str
    needs_path: bool
    default_n_train: int | None  # None: all available (see the loader)
    default_n_test: int | None
    options: dict[str, Any]
    image_shape: tuple[int, int, int] | None


def load_dataset(
    name: str,
    *,
    n_train: int | str | None = None,
    n_test: int | str | None = None,
    seed: int = 0,
    path: str | Path | None = None,
    flatten: bool | None = None,
    **options,
) -> Dataset:
    """Load a data set by name and split it into training and test points.

    Parameters
    ----------
    name:
        One of ``"synthetic"``, ``"digits"``, ``"diabetes"``, ``"cifar10"``,
        ``"npz"``, ``"csv"`` (see :func:`list_datasets`).
    n_train, n_test:
        Numbers of training and test points, chosen at random (seeded).  Where
        the source has an official train/test split (CIFAR-10, an ``.npz``
        with test arrays) they are drawn from the respective parts; otherwise
        from one seeded permutation of all rows, training points from its
        front and test points from its back, so they are disjoint and the test
        set does not depend on ``n_train``.  None: the data set's default
        (:func:`list_datasets`).  ``"all"``: every point available: for
        ``n_train``, all rows the test set leaves (or the whole official
        training part); for ``n_test``, all rows the training set leaves (or
        the whole official test part); not both, and not for ``"synthetic"``.
        ``n_test=0`` gives an empty test set.
    seed:
        Non-negative integer seeding the split (and, for ``"synthetic"``, the
        data).  The same seed gives the same arrays.
    path:
        File or directory for ``"cifar10"``, ``"npz"`` and ``"csv"``; must be
        None for the built-in data sets.
    flatten:
        None keeps the natural layout (images ``(n, H, W, C)``); True reshapes
        inputs to ``(n, -1)`` (:meth:`Dataset.flattened`); False asks for
        images and is an error for data without image inputs.
    **options:
        Loader options, listed with their defaults by :func:`list_datasets`.

    Returns
    -------
    Dataset

    Raises
    ------
    ValueError
        Unknown ``name``, bad sizes (naming the argument and the number of
        points available), bad options, malformed files.
    FileNotFoundError
        ``path`` (or a file expected inside it) does not exist.
    TypeError
        An option the loader does not take.
    """
    name = _checks.one_of("name", name, tuple(_REGISTRY))
    spec = _REGISTRY[name]
    seed = _checks.nonnegative_int("seed", seed)
    n_train = _size("n_train", n_train, minimum=1)
    n_test = _size("n_test", n_test, minimum=0)
    if n_train == ALL and n_test == ALL:
        raise _checks.fail("n_test", "a number or None (the data set's default) with n_train='all'", "all")
    if flatten is not None and not isinstance(flatten, bool):
        raise _checks.fail("flatten", "None, True or False", flatten)
    unknown = sorted(set(options) - set(spec.options))
    if unknown:
        allowed = ", ".join(spec.options) or "none"
        raise _checks.fail("options", f"options of data set {name!r} ({allowed})", ", ".join(unknown), TypeError)
    if spec.needs_path and path is None:
        raise _checks.fail("path", f"a file or directory path for data set {name!r}", None)
    if not spec.needs_path and path is not None:
        raise _checks.fail("path", f"None for the built-in data set {name!r}", path)
    if path is not None and not isinstance(path, (str, Path)):
        raise _checks.fail("path", "a str or pathlib.Path", type(path).__name__, TypeError)
    kwargs = {**spec.options, **options}
    if spec.needs_path:
        kwargs["path"] = Path(path).expanduser()
    data = spec.loader(n_train=n_train, n_test=n_test, seed=seed,
                       default_n_train=spec.default_n_train, default_n_test=spec.default_n_test, **kwargs)
    if flatten is True:
        return data.flattened()
    if flatten is False:
        if data.image_shape is None:
            raise _checks.fail("flatten", f"None or True: data set {name!r} has no image inputs", False)
    return data


ALL = "all"
"""``n_train="all"`` / ``n_test="all"``: every point available (see :func:`load_dataset`)."""


def _size(name: str, value, *, minimum: int):
    """``None`` (the data set's default), ``"all"``, or an integer of at least ``minimum``."""
    if value is None or value == ALL:
        return value
    if isinstance(value, str):
        kind = "a positive" if minimum == 1 else "a non-negative"
        raise _checks.fail(name, f"{kind} integer, 'all' or None (the data set's default)", value)
    return _checks.positive_int(name, value) if minimum == 1 else _checks.nonnegative_int(name, value)


def list_datasets() -> list[dict[str, Any]]:
    """Describe the data sets :func:`load_dataset` knows.

    Returns
    -------
    list of dict
        One per data set, with keys ``name``, ``description``, ``needs_path``,
        ``default_n_train`` and ``default_n_test`` (None: all available; see
        :func:`load_dataset`), ``options`` (name -> default) and
        ``image_shape`` (``(H, W, C)`` or None).
    """
    return [
        {
            "name": name,
            "description": spec.description,
            "needs_path": spec.needs_path,
            "default_n_train": spec.default_n_train,
            "default_n_test": spec.default_n_test,
            "options": dict(spec.options),
            "image_shape": spec.image_shape,
        }
        for name, spec in _REGISTRY.items()
    ]


# ---------------------------------------------------------------------------
# Splitting and standardisation
# ---------------------------------------------------------------------------


def _named_rngs(seed: int, *names: str) -> dict[str, np.random.Generator]:
    """Independent generators, one per name, from one seed."""
    children = np.random.SeedSequence(seed).spawn(len(names))
    return {name: np.random.default_rng(child) for name, child in zip(names, children)}


def _permutation_split(num_rows: int, n_train, n_test, *, seed: int, default_n_train, default_n_test,
                       source: str) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint index sets from one seeded permutation of ``num_rows`` rows.

    Training indices are the permutation's first ``n_train`` entries and test
    indices its last ``n_test``.  Missing sizes take the default, capped at
    what is available; with no default, ``n_test`` is a fifth of the rows (at
    least one when there are two or more) and ``n_train`` the rest.
    """
    if n_train == ALL:  # every row the test set leaves
        n_test = _permutation_test_size(num_rows, None, n_test, default_n_test, source)
        n_train = num_rows - n_test
    if n_test == ALL:  # every row the training set leaves
        if n_train is None and default_n_train is None:  # both would take every row
            raise _checks.fail("n_test", f"a number with n_train left to {source}'s default (every row the "
                                         "test set leaves)", ALL)
        if n_train is None:
            n_train = min(default_n_train, num_rows - 1)
        n_test = num_rows - min(n_train, num_rows)
    if n_train is not None and n_train > num_rows:
        raise _checks.fail("n_train", f"at most {num_rows} (the rows available in {source})", n_train)
    n_test = _permutation_test_size(num_rows, n_train, n_test, default_n_test, source)
    if n_train is None:
        remaining = num_rows - n_test
        n_train = remaining if default_n_train is None else min(default_n_train, remaining)
    order = _named_rngs(seed, "split")["split"].permutation(num_rows)
    return order[:n_train], order[num_rows - n_test:]


def _permutation_test_size(num_rows: int, n_train, n_test, default_n_test, source: str) -> int:
    """The number of test rows of :func:`_permutation_split` (``n_train`` None: not chosen yet)."""
    if n_test is None:
        remaining = num_rows - (n_train if n_train is not None else 1)
        wanted = default_n_test if default_n_test is not None else max(1, num_rows // 5)
        n_test = max(0, min(wanted, remaining))
    if n_test > num_rows - (n_train or 1):
        what = f"{num_rows} rows minus n_train={n_train}" if n_train is not None else \
            f"{num_rows} rows, leaving at least one training point"
        raise _checks.fail("n_test", f"at most {num_rows - (n_train or 1)} ({what} in {source})", n_test)
    return n_test


def _official_split(num_train: int, num_test: int, n_train, n_test, *, seed: int, default_n_train,
                    default_n_test, source: str) -> tuple[np.ndarray, np.ndarray]:
    """Seeded random subsets of an official training part and test part (``"all"``: the whole part)."""
    n_train = num_train if n_train == ALL else n_train
    n_test = num_test if n_test == ALL else n_test
    if n_train is not None and n_train > num_train:
        raise _checks.fail("n_train", f"at most {num_train} (the training points in {source})", n_train)
    if n_test is not None and n_test > num_test:
        raise _checks.fail("n_test", f"at most {num_test} (the test points in {source})", n_test)
    if n_train is None:
        n_train = num_train if default_n_train is None else min(default_n_train, num_train)
    if n_test is None:
        n_test = num_test if default_n_test is None else min(default_n_test, num_test)
    rngs = _named_rngs(seed, "train", "test")
    return rngs["train"].permutation(num_train)[:n_train], rngs["test"].permutation(num_test)[:n_test]


def _fit_standardiser(x_train: np.ndarray, scheme: str) -> dict[str, Any]:
    """Training statistics for one of three schemes.

    ``per_feature``: mean and std of every column of ``(n, d)`` data.
    ``per_channel``: mean and std of every channel of ``(n, H, W, C)`` images.
    ``per_pixel_mean_global_std``: the mean image, and one std of the centred
    pixels, which keeps the relative scale of the pixels.

    Stds of (numerically) constant features (a std at most 1e-10 of the
    feature's largest magnitude) are replaced by 1, so such a feature becomes 0 in training and keeps its offset from the training
    value in test.
    """
    with np.errstate(over="ignore", invalid="ignore"):  # overflow is refused by _check_standardised
        return _fit(x_train, scheme)


def _fit(x_train: np.ndarray, scheme: str) -> dict[str, Any]:
    if scheme == "per_feature":
        axes = (0,)
    elif scheme == "per_channel":
        axes = tuple(range(x_train.ndim - 1))
    elif scheme == "per_pixel_mean_global_std":
        axes = None
    else:  # pragma: no cover - internal
        raise AssertionError(scheme)
    if axes is None:
        mean = x_train.mean(axis=0)
        std = np.asarray((x_train - mean).std())
    else:
        mean, std = x_train.mean(axis=axes), x_train.std(axis=axes)
    # a column's own magnitude says whether it is constant (a column of 1e-150 next to one of 1e150 is not)
    scale = np.max(np.abs(x_train), axis=axes) if x_train.size else np.zeros_like(std)
    std = np.where(std <= 1e-10 * scale, 1.0, std)
    return {"scheme": scheme, "mean": mean, "std": std}


def _apply(x: np.ndarray, stats: dict[str, Any]) -> np.ndarray:
    with np.errstate(over="ignore", invalid="ignore"):  # overflow is refused by _check_standardised
        return (x - stats["mean"]) / stats["std"]


def _check_standardised(what: str, arrays, stats: dict[str, Any], columns=None) -> None:
    """Refuse a standardisation whose statistics or results are not finite (values near the float
    range: the square in the std overflows, and the column would silently turn into zeros), naming
    the column (``columns``: names of the last axis, else its index)."""
    last = arrays[0].shape[-1] if arrays[0].ndim else 1
    flags = np.zeros(last, bool)
    for a in arrays:
        if a.size:
            flags |= ~np.isfinite(a.reshape(-1, last)).all(axis=0)
    for stat in (np.asarray(stats["mean"]), np.asarray(stats["std"])):
        if stat.ndim and stat.shape[-1] == last:
            flags |= ~np.isfinite(stat.reshape(-1, last)).all(axis=0)
        elif not np.isfinite(stat).all():  # one statistic for every column
            flags[:] = True
    if not flags.any():
        return
    index = int(np.argmax(flags))
    if flags.all() and last > 1:
        name = "every column"
    else:
        name = "column " + (repr(columns[index]) if columns and index < len(columns) else str(index))
    raise _checks.fail(f"data ({what})", "columns whose standardisation (mean and std of the training rows) is "
                       "finite", f"{name}, whose values overflow it (magnitudes near the float64 range; rescale "
                       "it, or load it with standardise=False)")


def _one_hot(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """One-hot targets minus :data:`TARGET_OFFSET`, ``(n, num_classes)``."""
    return np.eye(num_classes)[labels] - TARGET_OFFSET


def _finish(name: str, x: np.ndarray, y: np.ndarray, train_idx, test_idx, *, x_test=None, y_test=None,
            x_scale: float = 1.0, x_scheme: str | None, standardise_y: bool, image_shape,
            info: dict[str, Any]) -> Dataset:
    """Select rows, standardise with training statistics and build the Dataset.

    ``x_test``/``y_test`` default to ``x``/``y`` (a pooled source); give them
    for sources with an official test part.  Rows are selected before they are
    converted to float64 and multiplied by ``x_scale``, so memory follows the
    number of points selected rather than the size of the source.
    """
    x_test = x if x_test is None else x_test
    y_test = y if y_test is None else y_test
    xtr = np.asarray(x[train_idx], np.float64) * x_scale
    xte = np.asarray(x_test[test_idx], np.float64) * x_scale
    ytr, yte = np.asarray(y[train_idx], np.float64), np.asarray(y_test[test_idx], np.float64)
    stats: dict[str, Any] = {}
    if x_scheme is not None:
        stats["x"] = _fit_standardiser(xtr, x_scheme)
        xtr, xte = _apply(xtr, stats["x"]), _apply(xte, stats["x"])
        _check_standardised("inputs", (xtr, xte), stats["x"], info.get("input_columns"))
    if standardise_y:
        stats["y"] = _fit_standardiser(ytr, "per_feature")
        ytr, yte = _apply(ytr, stats["y"]), _apply(yte, stats["y"])
        _check_standardised("targets", (ytr, yte), stats["y"], info.get("target_columns"))
    info = {**info, "train_indices": np.asarray(train_idx), "test_indices": np.asarray(test_idx),
            "standardisation": stats}
    return Dataset(name, xtr, ytr, xte, yte, image_shape=image_shape, info=info)


# ---------------------------------------------------------------------------
# Built-in data sets
# ---------------------------------------------------------------------------


MAX_SYNTHETIC_VALUES = 2**31
"""The most float64 values a synthetic data set may hold (16 GiB), checked before allocating."""


def _load_synthetic(*, n_train, n_test, seed, default_n_train, default_n_test, in_dim, out_dim,
                    noise_std, num_features) -> Dataset:
    r"""Seeded regression from a smooth random function.

    .. math::

        x \sim \mathcal N(0, I_{d}), \qquad
        f(x) = \sqrt{2/K}\, \sum_{k=1}^{K} a_k \cos(w_k^\top x + b_k), \qquad
        y = f(x) + \sigma\, \varepsilon,

    with :math:`w_k \sim \mathcal N(0, I_d / d)`, :math:`b_k \sim U(0, 2\pi)`,
    :math:`a_k \sim \mathcal N(0, I_{\mathrm{out}})`: a random-feature draw
    from a GP with an RBF kernel of lengthscale :math:`\sqrt d`, so
    :math:`\operatorname{Var} f \approx 1` (Rahimi & Recht 2007).
    """
    in_dim = _checks.positive_int("in_dim", in_dim)
    out_dim = _checks.positive_int("out_dim", out_dim)
    noise_std = _checks.nonnegative_float("noise_std", noise_std)
    num_features = _checks.positive_int("num_features", num_features)
    for name, value in (("n_train", n_train), ("n_test", n_test)):
        if value == ALL:
            raise _checks.fail(name, "a number or None (synthetic data has no 'all': it is drawn at any size)", value)
    n_train = default_n_train if n_train is None else n_train
    n_test = default_n_test if n_test is None else n_test
    values = (n_train + n_test) * max(in_dim, num_features, out_dim)
    if values > MAX_SYNTHETIC_VALUES:  # refuse before allocating (the features alone would not fit)
        raise _checks.fail("n_train", f"(n_train + n_test) x max(in_dim, num_features, out_dim) <= 2**31 values "
                                      "of synthetic data (16 GiB)", f"{values:,} values (n_train {n_train:,})")
    rng = _named_rngs(seed, "function", "x_train", "noise_train", "x_test", "noise_test")
    w = rng["function"].normal(size=(in_dim, num_features)) / np.sqrt(in_dim)
    b = rng["function"].uniform(0.0, 2.0 * np.pi, size=num_features)
    a = rng["function"].normal(size=(num_features, out_dim))

    def f(x):  # x: (n, in_dim) -> (n, out_dim)
        return np.sqrt(2.0 / num_features) * np.cos(x @ w + b) @ a

    x_train = rng["x_train"].normal(size=(n_train, in_dim))
    x_test = rng["x_test"].normal(size=(n_test, in_dim))
    f_train, f_test = f(x_train), f(x_test)
    y_train = f_train + noise_std * rng["noise_train"].normal(size=(n_train, out_dim))
    y_test = f_test + noise_std * rng["noise_test"].normal(size=(n_test, out_dim))
    info = {"source": "synthetic random-feature regression", "split": "independent draws", "seed": seed,
            "noise_std": noise_std, "num_features": num_features, "f_train": f_train, "f_test": f_test,
            "standardisation": {}}
    return Dataset("synthetic", x_train, y_train, x_test, y_test, info=info)


def _load_digits(*, n_train, n_test, seed, default_n_train, default_n_test) -> Dataset:
    """scikit-learn's 8x8 digits: pixel values 0..16, per-pixel mean, one global std."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.asarray(bunch.images, np.float64)[..., None]  # (1797, 8, 8, 1)
    labels = np.asarray(bunch.target, np.int64)
    source = "sklearn.datasets.load_digits"
    train_idx, test_idx = _permutation_split(len(images), n_train, n_test, seed=seed,
                                             default_n_train=default_n_train, default_n_test=default_n_test,
                                             source=f"digits ({source})")
    info = {"source": source, "split": "permutation", "seed": seed, "num_available": len(images),
            "targets": f"one-hot minus {TARGET_OFFSET}", "num_classes": _NUM_CLASSES}
    return _finish("digits", images, _one_hot(labels, _NUM_CLASSES), train_idx, test_idx,
                   x_scheme="per_pixel_mean_global_std", standardise_y=False, image_shape=images.shape[1:], info=info)


def _load_diabetes(*, n_train, n_test, seed, default_n_train, default_n_test) -> Dataset:
    """scikit-learn's diabetes regression, raw features, standardised per column."""
    from sklearn.datasets import load_diabetes

    bunch = load_diabetes(scaled=False)
    x = np.asarray(bunch.data, np.float64)  # (442, 10)
    y = np.asarray(bunch.target, np.float64)[:, None]  # (442, 1)
    source = "sklearn.datasets.load_diabetes(scaled=False)"
    train_idx, test_idx = _permutation_split(len(x), n_train, n_test, seed=seed, default_n_train=default_n_train,
                                             default_n_test=default_n_test, source=f"diabetes ({source})")
    info = {"source": source, "split": "permutation", "seed": seed, "num_available": len(x),
            "feature_names": list(bunch.feature_names)}
    return _finish("diabetes", x, y, train_idx, test_idx, x_scheme="per_feature", standardise_y=True,
                   image_shape=None, info=info)


# ---------------------------------------------------------------------------
# Loaders for files on disk
# ---------------------------------------------------------------------------


def _existing_file(path: Path, what: str) -> Path:
    if not path.exists():
        raise FileNotFoundError(f"argument `path`: expected an existing {what} file, received {str(path)!r}, "
                                "which does not exist")
    if not path.is_file():
        raise FileNotFoundError(f"argument `path`: expected an existing {what} file, received {str(path)!r}, "
                                "which is not a file")
    return path


class _ForbiddenGlobal(pickle.UnpicklingError):
    """A pickle that names a global outside :data:`_BATCH_GLOBALS`; ``args[0]`` is ``module.name``."""


#: The globals a CIFAR-10 python batch may name: NumPy's array reconstruction (NumPy 1 and 2 module
#: names, pickle protocols 2 to 5) and ``_codecs.encode``, with which protocol 2 stores ``bytes``.
_BATCH_GLOBALS = frozenset({
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
})


class _BatchUnpickler(pickle.Unpickler):
    """An Unpickler that resolves only :data:`_BATCH_GLOBALS` (anything else: :class:`_ForbiddenGlobal`)."""

    def find_class(self, module, name):
        if (module, name) in _BATCH_GLOBALS:
            return super().find_class(module, name)
        raise _ForbiddenGlobal(f"{module}.{name}")

    def persistent_load(self, pid):
        raise _ForbiddenGlobal(f"persistent id {pid!r}")


def _read_cifar_batch(file: Path) -> tuple[np.ndarray, np.ndarray]:
    """One pickled batch -> images ``(N, 32, 32, 3)`` uint8 and labels ``(N,)``.

    The file is unpickled by :class:`_BatchUnpickler`, which admits only what the format needs
    (dicts, lists, bytes, strings, numbers and NumPy arrays): a batch that names any other
    global (which ordinary unpickling would import and call) is refused, naming the file and
    the global, and no code of it runs.
    """
    try:
        with open(file, "rb") as handle:
            batch = _BatchUnpickler(handle, encoding="bytes").load()
    except _ForbiddenGlobal as err:
        raise ValueError(f"argument `path`: expected a CIFAR-10 python batch of dicts, lists, bytes, strings, "
                         f"numbers and NumPy arrays, received {str(file)!r}, which asks to load the global "
                         f"{err.args[0]!r} (refused: unpickling it could run code)") from None
    except Exception as err:
        raise ValueError(f"{file}: expected a pickled CIFAR-10 python batch, could not unpickle it ({err})") from err
    if not isinstance(batch, dict):
        raise ValueError(f"{file}: expected a pickled dict, received {type(batch).__name__}")
    data = batch.get(b"data", batch.get("data"))
    labels = batch.get(b"labels", batch.get("labels"))
    if data is None or labels is None:
        raise ValueError(f"{file}: expected keys b'data' and b'labels', received keys {sorted(map(str, batch))}")
    data, labels = np.asarray(data), np.asarray(labels)
    if data.ndim != 2 or data.shape[1] != int(np.prod(_CIFAR_SHAPE)) or labels.shape != (data.shape[0],):
        raise ValueError(f"{file}: expected b'data' of shape (N, 3072) and N b'labels', received shapes "
                         f"{data.shape} and {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= _NUM_CLASSES):
        raise ValueError(f"{file}: expected labels in 0..9, received values in {labels.min()}..{labels.max()}")
    # Rows are 1024 red, then 1024 green, then 1024 blue values, each plane row-major.
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return images, labels.astype(np.int64)


def _load_cifar10(*, n_train, n_test, seed, default_n_train, default_n_test, path: Path) -> Dataset:
    """CIFAR-10 python batches: pixels scaled to [0, 1], per-channel standardised."""
    if not path.is_dir():
        state = "is not a directory" if path.exists() else "does not exist"
        raise FileNotFoundError(f"argument `path`: expected a directory holding the CIFAR-10 python batches "
                                f"({', '.join(_CIFAR_TRAIN_FILES)}, {_CIFAR_TEST_FILE}), received {str(path)!r}, "
                                f"which {state}")
    names = (*_CIFAR_TRAIN_FILES, _CIFAR_TEST_FILE)
    missing = [n for n in names if not (path / n).is_file()]
    if missing:
        raise FileNotFoundError(f"argument `path`: expected a directory holding the CIFAR-10 python batches "
                                f"({', '.join(names)}), received {str(path)!r}, which lacks {', '.join(missing)}")
    parts = [_read_cifar_batch(path / n) for n in _CIFAR_TRAIN_FILES]
    train_images = np.concatenate([p[0] for p in parts])
    train_labels = np.concatenate([p[1] for p in parts])
    test_images, test_labels = _read_cifar_batch(path / _CIFAR_TEST_FILE)
    train_idx, test_idx = _official_split(len(train_images), len(test_images), n_train, n_test, seed=seed,
                                          default_n_train=default_n_train, default_n_test=default_n_test,
                                          source=f"CIFAR-10 at {str(path)!r}")
    info = {"source": str(path), "split": "official", "seed": seed, "pixel_scale": 1.0 / 255.0,
            "num_available_train": len(train_images), "num_available_test": len(test_images),
            "targets": f"one-hot minus {TARGET_OFFSET}", "num_classes": _NUM_CLASSES}
    return _finish("cifar10", train_images, _one_hot(train_labels, _NUM_CLASSES), train_idx, test_idx,
                   x_test=test_images, y_test=_one_hot(test_labels, _NUM_CLASSES), x_scale=1.0 / 255.0,
                   x_scheme="per_channel", standardise_y=False, image_shape=_CIFAR_SHAPE, info=info)


def _inputs_layout(name: str, x: np.ndarray) -> tuple[np.ndarray, tuple[int, int, int] | None]:
    """Tabular ``(n,)``/``(n, d)`` or images ``(n, H, W)``/``(n, H, W, C)``."""
    if x.ndim == 1:
        return x[:, None], None
    if x.ndim == 2:
        return x, None
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim == 4:
        return x, tuple(int(d) for d in x.shape[1:])
    raise _checks.fail(name, "inputs of shape (n,), (n, d), (n, H, W) or (n, H, W, C)", f"shape {x.shape}")


def _targets_layout(name: str, y: np.ndarray) -> np.ndarray:
    if y.ndim == 1:
        return y[:, None]
    if y.ndim == 2:
        return y
    raise _checks.fail(name, "targets of shape (n,) or (n, out_dim)", f"shape {y.shape}")


def _load_npz(*, n_train, n_test, seed, default_n_train, default_n_test, path: Path, x_key, y_key,
              x_test_key, y_test_key, standardise) -> Dataset:
    """Arrays in an ``.npz``; pre-split when it holds both test keys."""
    for arg, value in (("x_key", x_key), ("y_key", y_key), ("x_test_key", x_test_key), ("y_test_key", y_test_key)):
        if not isinstance(value, str) or not value:
            raise _checks.fail(arg, "a non-empty string", value)
    if not isinstance(standardise, bool):
        raise _checks.fail("standardise", "True or False", standardise)
    file = _existing_file(path, ".npz")
    _check_magic(file, (_ZIP_MAGIC, _EMPTY_ZIP_MAGIC, _NPY_MAGIC), "an .npz archive (a zip file)")
    try:
        archive = np.load(io.BytesIO(file.read_bytes()), allow_pickle=False)  # no file left open on errors
    except Exception as err:
        raise ValueError(f"argument `path`: expected an .npz archive, could not read {str(file)!r} ({err})") from err
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ValueError(f"argument `path`: expected an .npz archive, received {str(file)!r}, a single .npy array")
    with archive:
        keys = list(archive.files)
        for arg, key in (("x_key", x_key), ("y_key", y_key)):
            if key not in keys:
                raise _checks.fail(arg, f"a key of {str(file)!r} (its keys: {', '.join(keys)})", key)
        has = {arg: key in keys for arg, key in (("x_test_key", x_test_key), ("y_test_key", y_test_key))}
        if has["x_test_key"] != has["y_test_key"]:
            given, lacking = ("x_test_key", "y_test_key") if has["x_test_key"] else ("y_test_key", "x_test_key")
            key = y_test_key if lacking == "y_test_key" else x_test_key
            raise _checks.fail(lacking, f"a key of {str(file)!r} since it holds the `{given}` array "
                                        f"(its keys: {', '.join(keys)})", key)
        try:
            arrays = {k: archive[k] for k in ((x_key, y_key, x_test_key, y_test_key) if has["x_test_key"]
                                               else (x_key, y_key))}
        except Exception as err:  # a truncated or corrupt member (zipfile, zlib or the .npy header)
            raise ValueError(f"argument `path`: expected a readable .npz archive, received {str(file)!r}, whose "
                             f"arrays cannot be read ({type(err).__name__}: {err})") from None
    x, image_shape = _inputs_layout(x_key, _checks.finite_array(x_key, arrays[x_key]))
    y = _targets_layout(y_key, _checks.finite_array(y_key, arrays[y_key]))
    _checks.matching_rows((x_key, y_key), x, y)
    info = {"source": str(file), "seed": seed}
    x_scheme = None if not standardise else ("per_feature" if image_shape is None else "per_channel")
    if has["x_test_key"]:
        x_test, test_shape = _inputs_layout(x_test_key, _checks.finite_array(x_test_key, arrays[x_test_key]))
        y_test = _targets_layout(y_test_key, _checks.finite_array(y_test_key, arrays[y_test_key]))
        _checks.matching_rows((x_test_key, y_test_key), x_test, y_test)
        if x_test.shape[1:] != x.shape[1:] or y_test.shape[1] != y.shape[1]:
            raise _checks.fail(x_test_key, f"test arrays shaped like the training ones, (n, {_dims(x.shape[1:])}) "
                                           f"and (n, {y.shape[1]})", f"shapes {x_test.shape} and {y_test.shape}")
        train_idx, test_idx = _official_split(len(x), len(x_test), n_train, n_test, seed=seed,
                                              default_n_train=default_n_train, default_n_test=default_n_test,
                                              source=repr(str(file)))
        return _finish("npz", x, y, train_idx, test_idx, x_test=x_test, y_test=y_test, x_scheme=x_scheme,
                       standardise_y=standardise, image_shape=image_shape, info={**info, "split": "official"})
    train_idx, test_idx = _permutation_split(len(x), n_train, n_test, seed=seed, default_n_train=default_n_train,
                                             default_n_test=default_n_test, source=repr(str(file)))
    return _finish("npz", x, y, train_idx, test_idx, x_scheme=x_scheme, standardise_y=standardise,
                   image_shape=image_shape, info={**info, "split": "permutation"})


_ZIP_MAGIC, _EMPTY_ZIP_MAGIC, _NPY_MAGIC = b"PK\x03\x04", b"PK\x05\x06", b"\x93NUMPY"


def _check_magic(file: Path, magics: tuple[bytes, ...], expected: str) -> None:
    """The file must start with one of ``magics``; else a one-line error naming what it starts with."""
    with open(file, "rb") as handle:
        head = handle.read(16)
    if not any(head.startswith(m) for m in magics):
        what = "is empty" if not head else f"starts with {head[:8]!r}"
        raise ValueError(f"argument `path`: expected {expected}, received {str(file)!r}, which {what}")


def _read_csv_rows(file: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """``(header, [(line number, cells)])`` of a UTF-8 CSV (a byte-order mark is dropped)."""
    raw = file.read_bytes()
    nul = raw.find(b"\x00")
    if nul >= 0:
        raise ValueError(f"argument `path`: expected a text .csv file, received {str(file)!r}, a binary file "
                         f"(NUL byte at offset {nul})")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise ValueError(f"argument `path`: expected a UTF-8 text .csv file, received {str(file)!r}, with a "
                         f"byte that is not UTF-8 at offset {err.start}") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
        if header is None:
            raise ValueError(f"argument `path`: expected a .csv file with a header row, received {str(file)!r}, "
                             "which is empty")
        header = [h.strip() for h in header]
        repeated = sorted({h for h in header if header.count(h) > 1})
        if repeated:
            raise ValueError(f"argument `path`: expected a .csv header of distinct column names, received "
                             f"{str(file)!r}, whose header repeats {', '.join(map(repr, repeated))} (columns "
                             + "; ".join(", ".join(str(i + 1) for i, h in enumerate(header) if h == r)
                                         for r in repeated) + ")")
        rows = [(reader.line_num, row) for row in reader if any(cell.strip() for cell in row)]
    except csv.Error as err:
        raise ValueError(f"argument `path`: expected a .csv file, received {str(file)!r}, which CSV cannot "
                         f"parse at line {reader.line_num} ({err})") from None
    return header, rows


def _column_names(name: str, value, *, required: bool) -> list[str] | None:
    if value is None and not required:
        return None
    if isinstance(value, str):
        value = [value]
    ok = isinstance(value, (list, tuple)) and len(value) > 0 and all(isinstance(v, str) for v in value)
    if not ok or len(set(value)) != len(value):
        raise _checks.fail(name, "a non-empty list of distinct column names", value)
    return list(value)


def _load_csv(*, n_train, n_test, seed, default_n_train, default_n_test, path: Path, input_columns,
              target_columns, standardise) -> Dataset:
    """A ``.csv`` table with a header row; every selected cell must be a number."""
    targets = _column_names("target_columns", target_columns, required=True)
    inputs = _column_names("input_columns", input_columns, required=False)
    if not isinstance(standardise, bool):
        raise _checks.fail("standardise", "True or False", standardise)
    file = _existing_file(path, ".csv")
    header, rows = _read_csv_rows(file)
    for arg, names in (("target_columns", targets), ("input_columns", inputs or [])):
        missing = [n for n in names if n not in header]
        if missing:
            raise _checks.fail(arg, f"columns of {str(file)!r} (its columns: {', '.join(header)})", missing)
    if inputs is None:
        inputs = [h for h in header if h not in targets]
    overlap = [n for n in inputs if n in targets]
    if overlap or not inputs:
        raise _checks.fail("input_columns", "at least one column that is not a target column", inputs)
    if not rows:
        raise ValueError(f"argument `path`: expected data rows below the header, received {str(file)!r} with none")
    table = np.empty((len(rows), len(inputs) + len(targets)))
    positions = [header.index(n) for n in (*inputs, *targets)]
    for r, (line, row) in enumerate(rows):
        if len(row) != len(header):
            raise ValueError(f"{file}, line {line}: expected {len(header)} cells like the header, received {len(row)}")
        for c, pos in enumerate(positions):
            try:
                table[r, c] = float(row[pos])
            except ValueError:
                raise ValueError(f"{file}, line {line}, column {header[pos]!r}: expected a number, "
                                 f"received {row[pos]!r}") from None
    x = _checks.finite_array("input_columns", table[:, :len(inputs)])
    y = _checks.finite_array("target_columns", table[:, len(inputs):])
    train_idx, test_idx = _permutation_split(len(table), n_train, n_test, seed=seed, default_n_train=default_n_train,
                                             default_n_test=default_n_test, source=repr(str(file)))
    info = {"source": str(file), "split": "permutation", "seed": seed, "input_columns": inputs,
            "target_columns": targets}
    return _finish("csv", x, y, train_idx, test_idx, x_scheme="per_feature" if standardise else None,
                   standardise_y=standardise, image_shape=None, info=info)


_REGISTRY: dict[str, _Spec] = {
    "synthetic": _Spec(
        _load_synthetic,
        "Seeded regression: y = f(x) + noise, f a smooth random function (random Fourier features), x ~ N(0, I).",
        needs_path=False, default_n_train=128, default_n_test=64,
        options={"in_dim": 4, "out_dim": 1, "noise_std": 0.1, "num_features": 32}, image_shape=None),
    "digits": _Spec(
        _load_digits,
        "scikit-learn digits: 8x8x1 images of 0-9 (1797), one-hot minus 0.1 targets.",
        needs_path=False, default_n_train=256, default_n_test=256, options={}, image_shape=(8, 8, 1)),
    "diabetes": _Spec(
        _load_diabetes,
        "scikit-learn diabetes: 10 features, 1 regression target (442 rows), standardised.",
        needs_path=False, default_n_train=256, default_n_test=128, options={}, image_shape=None),
    "cifar10": _Spec(
        _load_cifar10,
        "CIFAR-10 from a directory of python batches (data_batch_1..5, test_batch): "
        "32x32x3 images, one-hot minus 0.1 targets.",
        needs_path=True, default_n_train=1024, default_n_test=1024, options={}, image_shape=_CIFAR_SHAPE),
    "npz": _Spec(
        _load_npz,
        "Arrays in an .npz archive (x, y; optionally pre-split x_test, y_test).",
        needs_path=True, default_n_train=None, default_n_test=None,
        options={"x_key": "x", "y_key": "y", "x_test_key": "x_test", "y_test_key": "y_test", "standardise": True},
        image_shape=None),
    "csv": _Spec(
        _load_csv,
        "A .csv table with a header row; target_columns required.",
        needs_path=True, default_n_train=None, default_n_test=None,
        options={"input_columns": None, "target_columns": None, "standardise": True}, image_shape=None),
}
