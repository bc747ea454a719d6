"""reprior.inference.arviz_compat and reprior._util.arviz_version: one interface over ArviZ 0.20-0.23 and 1.x.

The same file runs on either ArviZ (CI: Python 3.11 with 0.23, Python 3.12 with 1.x):
the figures below were computed once and must come out the same on both.
"""

import os
import subprocess
import sys

import numpy as np
import pytest

from reprior.inference import arviz_compat as _arviz
from reprior._util.arviz_version import SUPPORTED, check_version, version_problem

ONE_3 = {"arviz": "1.3.0", "arviz-base": "1.3.1", "arviz-stats": "1.3.3", "arviz-plots": "1.3.2"}


# -- which versions work ------------------------------------------------------------------
@pytest.mark.parametrize("versions", [{"arviz": "0.20.0"}, {"arviz": "0.23.4"}, ONE_3,
                                      {"arviz": "0.23.4", "arviz-base": "1.3.1"}])  # 0.23 ignores a stray arviz-base
def test_supported_versions_pass(versions):
    assert version_problem(versions) is None


@pytest.mark.parametrize("versions, found", [
    ({"arviz": "0.17.1"}, "found arviz 0.17.1"),
    ({"arviz": "2.0.0"}, "found arviz 2.0.0"),
    ({}, "found arviz missing"),
    ({**ONE_3, "arviz-stats": "1.2.0"}, "arviz-stats 1.2.0"),
    ({**ONE_3, "arviz-plots": None}, "arviz-plots missing"),
])
def test_unsupported_versions_are_named_in_one_line(versions, found):
    problem = version_problem(versions)
    assert problem.startswith(f"reprior needs {SUPPORTED}; ") and found in problem and "\n" not in problem


def test_check_version_raises_import_error(monkeypatch):
    import importlib.metadata

    real = importlib.metadata.version
    monkeypatch.setattr(importlib.metadata, "version", lambda name: "0.17.1" if name == "arviz" else real(name))
    with pytest.raises(ImportError, match="found arviz 0.17.1"):
        check_version()


def test_import_reprior_refuses_an_old_arviz():
    code = ("import importlib.metadata as m\n"
            "real = m.version\n"
            "m.version = lambda name: '0.17.1' if name == 'arviz' else real(name)\n"
            "import reprior\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == f"ImportError: reprior needs {SUPPORTED}; found arviz 0.17.1"


def test_arviz_refactor_notice_is_not_printed(tmp_path):
    """ArviZ 0.23 warns once a day (a stamp file in the user cache) on import; reprior's import hides it."""
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path)}  # no stamp: today's notice is due
    quiet = subprocess.run([sys.executable, "-W", "error::FutureWarning", "-c", "import reprior.inference.arviz_compat"],
                           capture_output=True, text=True, timeout=120, env=env)
    assert quiet.returncode == 0, quiet.stderr
    assert "refactor" not in quiet.stderr


# -- ESS, R-hat and MCSE: the same numbers on both versions -------------------------------
def _walk():
    return np.random.default_rng(0).normal(size=(2, 50, 3)).cumsum(axis=1)  # (chain, draw, k)


@pytest.mark.parametrize("fn, expected", [
    (lambda v: _arviz.ess(v), [3.610179370385462, 3.4050727024281557, 2.547434343435101]),
    (lambda v: _arviz.ess(v, method="tail"), [13.146362839614367, 13.091289928434279, 13.091289928434273]),
    (lambda v: _arviz.rhat(v), [1.6600689447410832, 1.7646663046517697, 3.0394524849642033]),
    (lambda v: _arviz.mcse(v), [1.8857534046545654, 1.3945350995018897, 5.604592212271802]),
], ids=["ess_bulk", "ess_tail", "rhat", "mcse"])
def test_statistics_match_the_recorded_figures(fn, expected):
    np.testing.assert_allclose(fn(_walk()), expected, rtol=1e-10)


def test_tail_ess_is_the_smaller_of_the_5_and_95_percent_quantile_ess():
    """Against ArviZ's own quantile ESS, called directly (the same call on 0.2x and 1.x)."""
    import arviz as az

    values = _walk()
    dataset = az.convert_to_dataset({"x": values})
    q05, q95 = (np.asarray(az.ess(dataset, method="quantile", prob=prob)["x"].values, dtype=float)
                for prob in (0.05, 0.95))
    np.testing.assert_allclose(_arviz.ess(values, method="tail"), np.minimum(q05, q95), rtol=1e-12)


def test_iid_draws_have_bulk_ess_near_the_number_of_draws():
    values = np.random.default_rng(1).standard_normal((4, 500, 5))
    ess = _arviz.ess(values)
    # Bulk ESS of i.i.d. draws is about 2000 with a relative sd of a few per cent.
    assert np.all(np.abs(ess / 2000 - 1) < 0.2), ess


# -- building, reading and writing --------------------------------------------------------
def _result():
    rng = np.random.default_rng(2)
    groups = {"posterior": {"theta_proj": rng.standard_normal((2, 5, 3))},
              "sample_stats": {"accept_prob": rng.uniform(size=(2, 5))},
              "observed_data": {"y": rng.standard_normal((4, 1))},
              "warmup_sample_stats": {"accept_prob": rng.uniform(size=(2, 3))}}
    return _arviz.from_dict(groups, dims={"theta_proj": ["projection"], "y": ["train", "output"]},
                            coords={"projection": np.arange(3)}, attrs={"noise_std": 0.1, "sampler": "nuts"})


def test_from_dict_puts_groups_dims_and_attrs_where_arviz_expects_them():
    idata = _result()
    assert type(idata).__name__ == ("DataTree" if _arviz.ARVIZ_1 else "InferenceData")
    assert _arviz.group_names(idata) == ["posterior", "sample_stats", "observed_data", "warmup_sample_stats"]
    assert idata.posterior["theta_proj"].dims == ("chain", "draw", "projection")
    assert idata.observed_data["y"].dims == ("train", "output")
    assert idata.attrs["noise_std"] == 0.1 and idata.attrs["sampler"] == "nuts"
    assert _arviz.library_version(idata)  # arviz_version on 0.2x, creation_library_version (arviz-base) on 1.x


def test_netcdf_round_trip_keeps_values_and_attrs(tmp_path):
    idata = _result()
    idata.to_netcdf(str(tmp_path / "r.nc"))
    back = _arviz.from_netcdf(tmp_path / "r.nc")
    assert _arviz.group_names(back) == _arviz.group_names(idata)
    np.testing.assert_array_equal(back.posterior["theta_proj"].values, idata.posterior["theta_proj"].values)
    assert float(back.attrs["noise_std"]) == 0.1 and str(back.attrs["sampler"]) == "nuts"


def test_group_attrs_can_be_set_on_every_group():
    idata = _result()
    for group in _arviz.group_names(idata):
        idata[group].attrs["cell_key"] = "abc"
    assert all(idata[g].attrs["cell_key"] == "abc" for g in _arviz.group_names(idata))


@pytest.mark.parametrize("name", ["result_arviz_0.23.nc", "result_arviz_1.3.nc"])
def test_a_file_written_under_either_arviz_reads_under_this_one(name):
    """tests/data holds one small result written by each ArviZ (draws from default_rng(3))."""
    from pathlib import Path

    back = _arviz.from_netcdf(Path(__file__).parent / "data" / name)
    rng = np.random.default_rng(3)
    np.testing.assert_array_equal(back.posterior["theta_proj"].values, rng.standard_normal((2, 4, 2)))
    np.testing.assert_array_equal(back.sample_stats["accept_prob"].values, rng.uniform(size=(2, 4)))
    assert float(back.attrs["noise_std"]) == 0.1 and str(back.attrs["sampler"]) == "nuts"
    assert _arviz.group_names(back) == ["posterior", "sample_stats"]


def test_remove_group_drops_a_group_and_it_stays_dropped_through_netcdf(tmp_path):
    """A sweep cell that keeps no parameters drops the kernel states (``_arviz.remove_group``)."""
    import numpy as np

    idata = _arviz.from_dict({"posterior": {"a": np.zeros((1, 3))}, "sample_stats": {"b": np.ones((1, 3))}})
    _arviz.remove_group(idata, "sample_stats")
    _arviz.remove_group(idata, "no_such_group")  # nothing to do
    assert _arviz.group_names(idata) == ["posterior"]
    idata.to_netcdf(str(tmp_path / "x.nc"))
    assert _arviz.group_names(_arviz.from_netcdf(tmp_path / "x.nc")) == ["posterior"]
