"""Property-based tests of the boundary (Hypothesis): whatever arrays, options and config files come in,
the API and the command line's parser end in a clean error (ValueError/TypeError naming an argument, or
one line with exit status 2) or a valid result, never a raw exception.  The number of examples is
bounded so that the default suite stays quick."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from reprior._util import checks as _checks
from reprior.experiments import cli
from reprior.experiments.runner import grid

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

FLOATS = st.floats(allow_nan=True, allow_infinity=True, width=64)
DTYPES = st.sampled_from([np.float64, np.float32, np.float16, np.int64, np.int8, np.bool_, np.complex128])
ARRAYS = hnp.arrays(dtype=DTYPES, shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4),
                    elements=None).filter(lambda a: True)


def _clean(err: Exception) -> bool:
    return str(err).startswith("argument `")


@SETTINGS
@given(value=st.one_of(ARRAYS, st.lists(FLOATS, max_size=5), st.text(max_size=5), st.none(), FLOATS))
def test_finite_array_accepts_or_names_the_argument(value):
    try:
        arr = _checks.finite_array("x", value)
    except ValueError as err:
        assert _clean(err), err
    else:
        assert np.issubdtype(arr.dtype, np.floating) and np.all(np.isfinite(arr))


@SETTINGS
@given(noise=FLOATS.filter(lambda v: v > 0), scale=st.floats(-320, 320), dtype=st.sampled_from(["float32", "float64"]))
def test_numbers_fit_accepts_or_names_the_argument(noise, scale, dtype):
    with np.errstate(over="ignore"):
        x = np.linspace(-1, 1, 8).reshape(4, 2) * np.power(10.0, scale)  # 1e309 is inf: refused too
    y = np.linspace(0, 1, 4)
    try:
        _checks.numbers_fit(noise, x, y, dtype=dtype)
    except ValueError as err:
        assert _clean(err) and str(err).split("`")[1] in ("noise_std", "x"), err
    else:  # what passes is representable: squares and the residual scale stay finite in dtype
        big = float(np.finfo(dtype).max)
        assert np.isfinite(noise) and noise**2 < big and float(np.max(np.abs(x))) ** 2 < big


OPTION_VALUES = st.one_of(st.integers(-2**70, 2**70), FLOATS, st.text(max_size=6), st.booleans(), st.none())


@SETTINGS
@given(seed=OPTION_VALUES)
def test_seed_in_the_documented_range(seed):
    try:
        value = _checks.seed("seed", seed)
    except ValueError as err:
        assert _clean(err)
    else:
        assert 0 <= value <= _checks.MAX_SEED


FLAG_VALUES = st.one_of(st.integers(-2**70, 2**70).map(str), FLOATS.map(repr), st.text(max_size=8))
SWEEP_FLAGS = ["--widths", "--depth", "--n-train", "--n-test", "--noise-std", "--seeds", "--num-chains",
               "--num-samples", "--num-warmup", "--thinning", "--target-accept", "--shard", "--data-seed",
               "--b2-threshold", "--num-projections", "--keep", "--dtype", "--sampler-option"]


@SETTINGS
@given(flag=st.sampled_from(SWEEP_FLAGS), value=FLAG_VALUES)
def test_the_sweep_parser_accepts_or_refuses_in_one_line(capsys, flag, value):
    try:
        args = cli.build_parser().parse_args(["sweep", flag, value])
    except SystemExit as stop:
        _, err = capsys.readouterr()
        assert stop.code == 2 and len(err.strip().splitlines()) == 1 and err.startswith("reprior: error: "), err
        return
    try:
        cli.sweep_options(args)
    except (ValueError, TypeError) as err:
        assert "\n" not in str(err).strip() and "Traceback" not in str(err)


TOML_VALUES = st.one_of(st.integers(-2**65, 2**65).map(str), st.floats(allow_nan=False).map(repr),
                        st.sampled_from(['"x"', "true", "[]", "[1, -2]", "{a = 1}", '"1e309"', "nan", "inf", "-0"]))
TOML_KEYS = st.sampled_from(["widths", "width", "seeds", "noise_std", "n_train", "num_chains", "depth", "dtype",
                             "keep", "datasets", "samplers", "target_accept", "thinning", "out", "unknown_key"])


@SETTINGS
@given(entries=st.lists(st.tuples(TOML_KEYS, TOML_VALUES), max_size=4), raw=st.binary(max_size=12))
def test_config_files_load_or_refuse_in_one_line(tmp_path_factory, entries, raw):
    folder = tmp_path_factory.mktemp("cfg")
    for text in ("\n".join(f"{k} = {v}" for k, v in entries).encode(), raw):
        path = folder / "c.toml"
        path.write_bytes(text)
        try:
            options = grid.validate(grid.merge(grid.load_config(path), {}))
        except (grid.ConfigError, ValueError, TypeError) as err:
            assert "\n" not in str(err).strip(), err
        else:
            assert all(w >= 1 for w in options["widths"])


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_numbers_fit_boundary_examples(dtype):
    safe = float(np.sqrt(np.finfo(dtype).max)) / 1e3
    _checks.numbers_fit(0.1, np.full((2, 2), safe), np.zeros(2), dtype=dtype)
    with pytest.raises(ValueError, match="argument `x`"):
        _checks.numbers_fit(0.1, np.full((2, 2), safe * 1.01), np.zeros(2), dtype=dtype)
