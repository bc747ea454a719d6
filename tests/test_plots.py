"""Tests for reprior.experiments.plots: every function writes a non-empty PNG and leaves pyplot alone."""

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest

from reprior.inference.arviz_compat import from_dict
from reprior.experiments import plots

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
    key = ("mlp", 2, "relu", "digits", 128, 64, 0.1, "nuts", "", 4, 500, 500)
    assert plots.group_title(key) == "mlp depth 2, relu, digits, n=128, noise_std 0.1 (one-hot y), nuts, 4x500"
    deeper = ("mlp", 2, "relu", "digits", 128, 64, 0.1, "nuts", '{"max_tree_depth": 5}', 4, 500, 500)
    assert plots.group_title(deeper) == ("mlp depth 2, relu, digits, n=128, noise_std 0.1 (one-hot y), "
                                         "nuts (max_tree_depth 5), 4x500")
    csv = ("mlp", 1, "erf", "csv", 96, 24, 0.05, "mclmc", "", 2, 300, 300)
    assert plots.group_title(csv) == ("mlp depth 1, erf, csv, n=96, noise_std 0.05 (standardised y), "
                                      "mclmc (unadjusted: biased), 2x300")
    assert plots.target_title(("mlp", 1, "relu", "synthetic", 16, 8, 0.1)) == \
        "mlp depth 1, relu, synthetic, n=16, noise_std 0.1 (raw y)"


# -- the sweep figures, looked at through their elements ----------------------------------
def _sampler_rows(widths=(8, 16), samplers=("nuts", "pcn", "mclmc"), failed=()):
    """Summary rows of one network and data, run by several samplers in two parameterisations;
    ``failed``: (sampler, width, parameterisation) whose chains failed (R-hat 1.5)."""
    rows = []
    for i, sampler in enumerate(samplers):
        for width in widths:
            for j, param in enumerate(("standard", "reprior")):
                rows.append({"arch": "mlp", "depth": 1, "activation": "relu", "dataset": "synthetic", "n_train": 16,
                             "n_test": 8, "noise_std": 0.1, "sampler": sampler, "num_chains": 2, "num_warmup": 50,
                             "num_samples": 50, "width": width, "parameterisation": param, "seed": 0,
                             "ess_per_eval_pred": 0.01 * (i + 1) * (j + 1) * width / 8,
                             "ess_per_grad_pred": 0.01 * (j + 1), "ess_per_draw_pred": 0.1 * (j + 1),
                             "ess_per_second_pred": 10.0 * (j + 1),
                             "rhat_max": 1.5 if (sampler, width, param) in failed else 1.01, "accept_mean": 0.8})
    return rows


def _labelled(ax):
    return [line for line in ax.get_lines() if not line.get_label().startswith("_")]


def _legend_texts(fig):
    return [t.get_text() for legend in fig.legends for t in legend.get_texts()]


def test_samplers_share_one_axis_a_line_per_sampler_and_parameterisation():
    fig = plots.metric_figure(_sampler_rows(), metric="ess_per_eval_pred", ylabel="ESS / eval")
    [ax] = fig.axes  # one target: one panel, every sampler on it
    lines = [line for line in _labelled(ax) if line.get_gid() != plots.MISSING_GID]
    assert [line.get_label() for line in lines] == [
        "nuts, standard", "nuts, reprior", "pcn, standard", "pcn, reprior",
        "mclmc (unadjusted: biased), standard", "mclmc (unadjusted: biased), reprior"]
    assert all(len(line.get_xdata()) == 2 for line in lines)  # two widths each
    colors = [line.get_color() for line in lines]
    assert colors[0] == colors[1] != colors[2] == colors[3] != colors[4]  # a colour per sampler
    assert [line.get_linestyle() for line in lines[:2]] == ["-", "--"]  # a style per parameterisation
    assert ax.get_xlabel() == "width" and ax.get_ylabel() == "ESS / eval"
    assert "noise_std 0.1 (raw y)" in ax.get_title()  # wrapped between settings, never inside one
    assert ax.get_xticks().tolist() == [8, 16] and [t.get_text() for t in ax.get_xticklabels()] == ["8", "16"]
    legend = _legend_texts(fig)
    assert "mclmc (unadjusted: biased), reprior" in legend and plots.FAILED_LABEL not in legend


def test_failed_points_are_hollow_markers_not_crosses_over_them():
    fig = plots.metric_figure(_sampler_rows(failed={("nuts", 16, "reprior")}), metric="ess_per_eval_pred")
    [ax] = fig.axes
    hollow = [line for line in ax.get_lines() if line.get_gid() == plots.FAILED_GID]
    assert len(hollow) == 1
    [nuts_reprior] = [line for line in ax.get_lines() if line.get_label() == "nuts, reprior"]
    assert hollow[0].get_xdata().tolist() == [16]
    assert hollow[0].get_markerfacecolor() == "white"
    assert hollow[0].get_markeredgecolor() == nuts_reprior.get_color()
    assert hollow[0].get_marker() == nuts_reprior.get_marker() == "s"
    assert list(nuts_reprior.get_markevery()) == [0]  # the filled marker only where the chains are fine
    assert not any(line.get_marker() == "x" for line in ax.get_lines())  # no crosses over the markers
    assert plots.FAILED_LABEL in _legend_texts(fig)


def test_one_width_panel_spans_an_octave_and_a_half_around_it():
    fig = plots.metric_figure(_sampler_rows(widths=(16,)), metric="ess_per_eval_pred")
    low, high = fig.axes[0].get_xlim()
    np.testing.assert_allclose([low, high], [16 / 2 ** 0.75, 16 * 2 ** 0.75])
    assert fig.axes[0].get_xticks().tolist() == [16]


def test_rhat_figure_draws_the_failure_rule_on_a_shared_axis():
    from reprior.inference import health

    rows = _sampler_rows(samplers=("nuts",)) + [dict(r, arch="resnet", depth=8) for r in _sampler_rows(samplers=("nuts",))]
    fig = plots.rhat_figure(rows)
    assert len(fig.axes) == 2
    for ax in fig.axes:
        [threshold] = [line for line in ax.get_lines() if line.get_linestyle() == "--" and len(set(line.get_ydata())) == 1
                       and line.get_label().startswith("R-hat")]
        assert set(threshold.get_ydata()) == {health.MAX_RHAT} == {1.1}
        assert ax.get_ylabel() == "max R-hat"
    assert fig.axes[0].get_shared_y_axes().joined(fig.axes[0], fig.axes[1])
    assert f"R-hat {health.MAX_RHAT:g}: the failure rule" in _legend_texts(fig)


def test_ratio_figure_a_line_per_sampler_coloured_apart():
    fig = plots.ratio_figure(_sampler_rows(samplers=("nuts", "pcn")))
    assert len(fig.axes) == 3
    lines = _labelled(fig.axes[0])
    assert [line.get_label() for line in lines] == ["nuts, reprior", "pcn, reprior"]
    assert lines[0].get_color() != lines[1].get_color()
    np.testing.assert_allclose(lines[0].get_ydata(), [2.0, 2.0])  # reprior / standard, per draw


def test_a_series_without_a_finite_value_is_named_in_the_legend():
    rows = [dict(r, ess_per_grad_pred=float("nan")) if r["sampler"] == "pcn" else r for r in _sampler_rows()]
    fig = plots.metric_figure(rows, metric="ess_per_grad_pred")
    assert "pcn, standard: no finite value" in _legend_texts(fig)


def test_identical_limit_lines_are_drawn_once_and_long_labels_fit():
    same = {"widths": [8, 16], "mean": [17.0, 11.0], "low": [17.0, 11.0], "high": [17.0, 11.0]}
    lines = [dict(same, label=f"{p}, mlp depth 1, relu, synthetic, n=16, {s}", parameterisation=p)
             for s in ("nuts", "pcn") for p in ("reprior", "standard")]
    fig = plots.width_lines_figure(lines, ylabel="KL to the prior from the SMC particles, a long label [nats]")
    [ax] = fig.axes
    drawn = _labelled(ax)
    assert len(drawn) == 1  # four identical lines: one
    assert _legend_texts(fig) == ["mlp depth 1, relu, synthetic, n=16"]  # what the four share
    assert "\n" in ax.get_ylabel()  # wrapped, so it fits the axes' height
    fig.canvas.draw()
    box = ax.yaxis.label.get_window_extent()
    assert box.y0 >= 0 and box.y1 <= fig.bbox.height  # nothing cut off
    distinct = [dict(same, label="a", parameterisation="reprior"),
                dict(same, mean=[1.0, 2.0], label="b", parameterisation="standard")]
    assert len(_labelled(plots.width_lines_figure(distinct, ylabel="y").axes[0])) == 2


def test_trace_figure_has_a_legend_and_axis_labels():
    fig = plots.trace_figure(_idata(), num=2)
    axes = fig.axes
    assert len(axes) == 3 * 2  # theta, phi, pred: density and trace
    assert {ax.get_xlabel() for ax in axes[1::2]} == {"draw (after warm-up)"}
    assert axes[0].get_xlabel() == "theta_proj (value)" and axes[0].get_ylabel() == "density"
    assert _legend_texts(fig) == ["projection 0", "projection 1", "chain 0", "chain 1"]


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
