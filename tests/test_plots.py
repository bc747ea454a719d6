"""Tests for reprior.plots: every function writes a non-empty PNG and leaves pyplot alone."""

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest

from reprior._arviz import from_dict
from reprior import plots

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _rows():
    rng = np.random.default_rng(0)
    rows = []
    for arch in ("mlp", "resnet"):
        for width in (8, 64, 512):
            for param in ("standard", "reprior", "reprior-sampled"):
                for seed in (0, 1):
                    rows.append({"arch": arch, "depth": 1, "width": width, "parameterisation": param, "seed": seed,
                                 "ess_per_grad_pred": rng.uniform(1e-3, 1e-2), "ess_per_grad_theta": rng.uniform(),
                                 "ess_per_draw_pred": rng.uniform(), "ess_per_second_pred": rng.uniform(1, 100),
                                 "rhat_max": 1 + rng.uniform(0, 0.1)})
    return rows


def _idata(with_phi=True):
    rng = np.random.default_rng(1)
    posterior = {"theta_proj": rng.standard_normal((2, 50, 4))}
    if with_phi:
        posterior["phi_proj"] = rng.standard_normal((2, 50, 4))
    return from_dict({"posterior": posterior, "posterior_predictive": {"f_test": rng.standard_normal((2, 50, 5, 2))}},
                     dims={"theta_proj": ["projection"], "phi_proj": ["projection"], "f_test": ["test", "output"]})


def _assert_png(path):
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert len(data) > 5000  # an empty 100 dpi canvas is ~2 kB; these have axes, lines and text


@pytest.fixture(autouse=True)
def _no_global_state():
    backend, figures = matplotlib.get_backend(), plt.get_fignums()
    yield
    assert matplotlib.get_backend() == backend
    assert plt.get_fignums() == figures


@pytest.mark.parametrize("fn", [plots.plot_ess_per_grad, plots.plot_ratio, plots.plot_rhat,
                                lambda rows, path: plots.plot_ess_per_grad(rows, path, group="theta")])
def test_sweep_plots_write_png(fn, tmp_path):
    path = tmp_path / "sub" / "figure.png"
    assert fn(_rows(), path) == path
    _assert_png(path)


def test_plots_survive_missing_metrics(tmp_path):
    rows = [{"width": 8, "parameterisation": "reprior", "seed": 0}]  # no standard, no metrics
    for fn in (plots.plot_ess_per_grad, plots.plot_ratio, plots.plot_rhat):
        _assert_png(fn(rows, tmp_path / f"{fn.__name__}.png"))
    _assert_png(plots.plot_rhat([], tmp_path / "empty.png"))


def test_trace_and_rank_from_idata_and_netcdf(tmp_path):
    idata = _idata()
    _assert_png(plots.plot_trace(idata, tmp_path / "trace.png", title="t"))
    idata.to_netcdf(str(tmp_path / "cell.nc"))
    _assert_png(plots.plot_rank(tmp_path / "cell.nc", tmp_path / "rank.png", num=1))
    _assert_png(plots.plot_rank(_idata(with_phi=False), tmp_path / "rank2.png", num=2))


def test_trace_without_any_projection_fails_clearly(tmp_path):
    idata = from_dict({"sample_stats": {"lp": np.zeros((2, 5))}})
    with pytest.raises(ValueError, match="idata"):
        plots.plot_trace(idata, tmp_path / "x.png")


def test_group_title():
    key = ("mlp", 2, "relu", "digits", 128, 64, 0.1, "nuts", 4, 500, 500)
    assert plots.group_title(key) == "mlp depth 2, relu, digits, n=128, nuts, 4x500"


def _curves(num):
    cost = np.geomspace(1e2, 1e5, 40)
    return [{"label": f"run {i}", "curve": {"grads": cost, "evals": cost, "seconds": cost / 1e3,
                                            "b2_mean": (i + 1) * 10 / cost, "b2_second": (i + 1) * 5 / cost}}
            for i in range(num)]


def test_b2_vs_cost_writes_png(tmp_path):
    path = tmp_path / "sub" / "b2.png"
    assert plots.plot_b2_vs_cost(_curves(3), path, cost="seconds", threshold=0.01, title="width 8") == path
    _assert_png(path)


def test_b2_figure_one_line_per_curve_and_the_threshold():
    fig = plots.b2_figure(_curves(3), cost="grads", threshold=0.02)
    [ax] = fig.axes
    lines = ax.get_lines()
    assert len(lines) == 3 + 1
    assert [line.get_label() for line in lines[:3]] == ["run 0", "run 1", "run 2"]
    np.testing.assert_allclose(lines[1].get_ydata(), 20 / np.geomspace(1e2, 1e5, 40))  # max(b2_mean, b2_second)
    assert lines[3].get_linestyle() == "--" and set(lines[3].get_ydata()) == {0.02}
    assert ax.get_xscale() == ax.get_yscale() == "log"
    assert ax.get_xlabel() == "gradient evaluations (warm-up included)"
    assert plots.b2_figure(_curves(1), cost="evals").axes[0].get_xlabel() == "log-density evaluations"
    assert plots.b2_figure(_curves(1), cost="seconds").axes[0].get_xlabel() == "seconds (warm-up included)"


def test_b2_vs_cost_checks_its_arguments(tmp_path):
    with pytest.raises(ValueError, match="argument `cost`"):
        plots.plot_b2_vs_cost(_curves(1), tmp_path / "x.png", cost="draws")
    with pytest.raises(ValueError, match="argument `threshold`"):
        plots.plot_b2_vs_cost(_curves(1), tmp_path / "x.png", threshold=2.0)
    with pytest.raises(ValueError, match=r"argument `curves\[0\]\['curve'\]`"):
        plots.plot_b2_vs_cost([{"label": "a", "curve": {"grads": np.ones(3)}}], tmp_path / "x.png")
