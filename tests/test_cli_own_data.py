"""The command line with the user's own data: sizes from the loader, per-sampler options, the plan's range."""

import numpy as np
import pytest

from cli_helpers import one_line_error, run
from reprior.experiments.runner import grid


@pytest.fixture
def csv_120(tmp_path):
    """A 120-row CSV: two inputs and a target."""
    rng = np.random.default_rng(0)
    path = tmp_path / "data.csv"
    lines = ["a,b,y"] + [f"{a:.6f},{b:.6f},{a - b:.6f}" for a, b in rng.normal(size=(120, 2))]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _csv_sweep(path, out, *extra):
    return ("sweep", "--dry-run", "--dataset", "csv", "--data-path", path, "--dataset-option",
            'target_columns=["y"]', "--widths", "8", "--num-warmup", "1", "--num-samples", "2", "--out", out, *extra)


def test_a_120_row_csv_sweeps_with_no_size_flags(capsys, tmp_path, csv_120):
    code, out, err = run(capsys, *_csv_sweep(csv_120, tmp_path / "out"))
    assert code == 0, err
    assert "x_train (96, 2), y_train (96, 1), x_test (24, 2)" in out  # the loader's own split: a fifth for testing
    assert "n_train=96 n_test=24" in out
    code, out, err = run(capsys, *_csv_sweep(csv_120, tmp_path / "out"), "--n-train", "all", "--n-test", "10")
    assert code == 0, err
    assert "x_train (110, 2)" in out and "x_test (10, 2)" in out


def test_sizes_default_to_the_loader_and_accept_all():
    options = grid.validate(grid.merge({"widths": [8], "n_train": [64, "all"]}))
    assert options["n_train"] == [64, "all"] and options["n_test"] is None
    assert grid.validate(grid.merge({"widths": [8]}))["n_train"] == [None]
    for bad in ({"n_train": ["most"]}, {"n_train": [0]}, {"n_test": "half"}):
        with pytest.raises(grid.ConfigError, match=r"n_t(rain|est) \(--n-t(rain|est)\): expected"):
            grid.validate(grid.merge({"widths": [8]}, bad))


def test_a_bad_size_flag_is_one_line(capsys, tmp_path):
    message = one_line_error(*run(capsys, "sweep", "--dry-run", "--widths", "8", "--n-train", "most",
                                  "--out", tmp_path / "o")[::2])
    assert "--n-train" in message and "all" in message and "'most'" in message


def _settings(options):
    cells = grid.expand(grid.validate(grid.merge({"widths": [8], "parameterisations": ["reprior"]}, options)),
                        dtype="float64")
    return {c.settings["sampler"]: c.settings["sampler_options"] for c in cells}


def test_a_plain_option_goes_to_the_samplers_that_take_it():
    assert _settings({"samplers": ["nuts", "pcn"], "sampler_options": {"max_tree_depth": 6}}) == \
        {"nuts": {"max_tree_depth": 6}, "pcn": {}}
    both = _settings({"samplers": ["nuts", "pcn"], "sampler_options": {"step_size": 0.3}, "target_accept": 0.7})
    assert both == {"nuts": {"step_size": 0.3, "target_accept_prob": 0.7},
                    "pcn": {"step_size": 0.3, "target_accept_prob": 0.7}}
    with pytest.raises(grid.ConfigError, match="at least one of the sweep's samplers .* received 'num_steps'"):
        _settings({"samplers": ["nuts", "pcn"], "sampler_options": {"num_steps": 4}})


def test_scoped_options_and_config_tables(tmp_path):
    scoped = _settings({"samplers": ["nuts", "pcn"],
                        "sampler_options": {"step_size": 0.3, "nuts:max_tree_depth": 5, "nuts:step_size": 0.1}})
    assert scoped == {"nuts": {"step_size": 0.1, "max_tree_depth": 5}, "pcn": {"step_size": 0.3}}
    config = tmp_path / "s.toml"
    config.write_text('widths = [8]\nsamplers = ["nuts", "pcn"]\nparameterisation = "reprior"\n'
                      "[sampler_options]\nstep_size = 0.3\n[sampler_options.nuts]\nmax_tree_depth = 6\n"
                      "[sampler_options.pcn]\ntarget_accept_prob = 0.3\n", encoding="utf-8")
    cells = grid.expand(grid.validate(grid.merge(grid.load_config(config))), dtype="float64")
    assert {c.settings["sampler"]: c.settings["sampler_options"] for c in cells} == {
        "nuts": {"step_size": 0.3, "max_tree_depth": 6}, "pcn": {"step_size": 0.3, "target_accept_prob": 0.3}}


def test_an_option_for_a_sampler_not_in_the_sweep_is_one_line(capsys, tmp_path):
    message = one_line_error(*run(capsys, "sweep", "--dry-run", "--widths", "8", "--sampler", "nuts", "pcn",
                                  "--sampler-option", "hmc:num_steps=4", "--out", tmp_path / "o")[::2])
    assert "--sampler-option" in message and "'hmc' is not in this sweep" in message and "nuts, pcn" in message
    message = one_line_error(*run(capsys, "sweep", "--dry-run", "--widths", "8", "--sampler", "nuts",
                                  "--sampler-option", "nuts:num_steps=4", "--out", tmp_path / "o")[::2])
    assert "settings of sampler 'nuts'" in message and "nuts:num_steps" in message
    assert not (tmp_path / "o").exists()


def test_one_sweep_gives_nuts_and_pcn_their_own_options(capsys, tmp_path):
    code, out, err = run(capsys, "sweep", "--dry-run", "--widths", "8", "--sampler", "nuts", "pcn",
                         "--dataset", "synthetic", "--n-train", "8", "--n-test", "2", "--num-warmup", "10",
                         "--num-samples", "10", "--num-chains", "1", "--parameterisations", "reprior",
                         "--sampler-option", "max_tree_depth=6", "--out", tmp_path / "o")
    assert code == 0, err
    # 20 iterations each: NUTS 1 to 63 gradients per iteration, pCN one density evaluation
    assert "(40 iterations, 40 to 1,280 gradient evaluations)" in out


@pytest.mark.parametrize("settings, expected", [
    ({"sampler": "nuts"}, (1, 1023)),
    ({"sampler": "nuts", "sampler_options": {"max_tree_depth": 6}}, (1, 63)),
    ({"sampler": "hmc"}, (16, 16)),
    ({"sampler": "hmc", "sampler_options": {"num_steps": 4}}, (4, 4)),
    ({"sampler": "underdamped_hmc"}, (1, 1)),
    ({"sampler": "split_hmc"}, (6, 6)),
    ({"sampler": "split_hmc", "sampler_options": {"num_steps": 4, "integrator": "mclachlan"}}, (8, 8)),
    ({"sampler": "pcn"}, (1, 1)),
    ({"sampler": "mclmc"}, (2, 2)),
    ({"sampler": "mclmc", "sampler_options": {"integrator": "isokinetic_velocity_verlet"}}, (1, 1)),
    ({"sampler": "adjusted_mclmc"}, (2, None)),
    ({"sampler": "elliptical_slice", "sampler_options": {"max_shrinks": 9}}, (1, 10)),
])
def test_gradients_per_iteration_follow_the_settings(settings, expected):
    assert grid.grads_per_iteration(settings) == expected
    cell = {**settings, "num_chains": 2, "num_warmup": 5, "num_samples": 10, "thinning": 1}
    low, high = grid.grad_evals_range(cell)
    assert (low, high) == (30 * expected[0], None if expected[1] is None else 30 * expected[1])


def test_the_plan_phrase():
    nuts = {"sampler": "nuts", "num_chains": 1, "num_warmup": 0, "num_samples": 10, "thinning": 1}
    hmc = dict(nuts, sampler="hmc")
    assert grid.describe_grad_evals([hmc]) == "about 160 gradient evaluations"
    assert grid.describe_grad_evals([hmc, nuts]) == "170 to 10,390 gradient evaluations"
    assert grid.describe_grad_evals([dict(nuts, sampler="adjusted_mclmc")]) == "at least 20 gradient evaluations"


def test_command_line_sampler_flags_narrow_and_override_a_config_file(capsys, tmp_path):
    """A preset's ``[sampler_options.nuts]`` table must not block ``--sampler split_hmc``, and a plain
    ``--sampler-option max_tree_depth=10`` overrides the file's ``[sampler_options.nuts]`` value."""
    from reprior.experiments import cli

    config = tmp_path / "record.toml"
    config.write_text('widths = [8]\nsampler = ["split_hmc", "nuts"]\nparameterisation = "reprior"\n'
                      f'out = "{tmp_path / "o"}"\ndataset = "synthetic"\nn_train = 8\nn_test = 2\n'
                      "[sampler_options.nuts]\nmax_tree_depth = 5\n[sampler_options.split_hmc]\nnum_steps = 12\n",
                      encoding="utf-8")

    def cell_options(*flags):
        args = cli.build_parser().parse_args(["sweep", "--config", str(config), *flags])
        cells = grid.expand(cli.sweep_options(args), dtype="float64")
        return {c.settings["sampler"]: c.settings["sampler_options"] for c in cells}

    assert cell_options() == {"split_hmc": {"num_steps": 12}, "nuts": {"max_tree_depth": 5}}
    assert cell_options("--sampler", "split_hmc") == {"split_hmc": {"num_steps": 12}}
    assert cell_options("--sampler", "nuts", "--sampler-option", "max_tree_depth=10") == {
        "nuts": {"max_tree_depth": 10}}
    assert cell_options("--sampler", "split_hmc", "--sampler-option", "num_steps=24",
                        "--sampler-option", "momentum_refresh=0.5") == {
        "split_hmc": {"num_steps": 24, "momentum_refresh": 0.5}}
    # a scoped flag for a sampler the flags left out is still refused, in one line
    message = one_line_error(*run(capsys, "sweep", "--config", config, "--dry-run", "--sampler", "nuts",
                                  "--sampler-option", "split_hmc:num_steps=3")[::2])
    assert "'split_hmc' is not in this sweep" in message
