"""Tests for the ``reprior`` command line (in-process through ``reprior.experiments.cli.main`` unless a process is needed)."""

from __future__ import annotations

import csv
import json
import pickle
import re
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

import reprior
from reprior.experiments import cli

from cli_helpers import one_line_error, run  # tests/cli_helpers.py

DOCS = Path(__file__).resolve().parents[1] / "docs"
EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
REQUIRED_COLUMNS = ["arch", "depth", "width", "parameterisation", "readout", "sampler", "seed", "num_chains",
                    "num_samples", "grad_evals", "sample_seconds", "ess_bulk_pred_median", "ess_bulk_pred_min",
                    "ess_bulk_theta_median", "ess_per_grad_pred", "ess_per_second_pred", "rhat_max", "accept_mean",
                    "divergences", "test_rmse"]
# Tiny and fast: static HMC with 3 leapfrog steps compiles much faster than NUTS.
TINY = ["--n-train", "8", "--n-test", "4", "--num-warmup", "10", "--num-samples", "8", "--num-chains", "2",
        "--sampler", "hmc", "--sampler-option", "num_steps=3", "--quiet"]


def assert_one_line_error(code, err):
    one_line_error(code, err)


# ---------------------------------------------------------------------------
# Small data files
# ---------------------------------------------------------------------------


def write_npz(path: Path) -> Path:
    rng = np.random.default_rng(0)
    np.savez(path, x=rng.standard_normal((20, 3)), y=rng.standard_normal(20))
    return path


def write_csv(path: Path) -> Path:
    rng = np.random.default_rng(1)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["a", "b", "c", "target"])
        writer.writerows(rng.standard_normal((20, 4)).round(4).tolist())
    return path


def write_cifar(root: Path) -> Path:
    """The CIFAR-10 python-batch layout, 4 images per training batch and 4 test images."""
    rng = np.random.default_rng(2)
    root.mkdir(parents=True, exist_ok=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8), b"labels": [0, 1, 2, 3]}
        (root / name).write_bytes(pickle.dumps(batch, protocol=2))
    return root


def data_flags(name: str, tmp_path: Path) -> list[str]:
    if name == "npz":
        return ["--dataset", "npz", "--data-path", write_npz(tmp_path / "data.npz")]
    if name == "csv":
        return ["--dataset", "csv", "--data-path", write_csv(tmp_path / "data.csv"),
                "--dataset-option", 'target_columns=["target"]']
    if name == "cifar10":
        return ["--dataset", "cifar10", "--data-path", write_cifar(tmp_path / "cifar")]
    return ["--dataset", name]


# ---------------------------------------------------------------------------
# Help, version, datasets, console script
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("argv", [["--help"], ["sweep", "--help"], ["report", "--help"], ["datasets", "--help"],
                                  ["sbc", "--help"], ["--version"]])
def test_help_everywhere(capsys, argv):
    code, out, _ = run(capsys, *argv)
    assert code == 0
    assert out.strip()


def test_sweep_help_lists_the_flags(capsys):
    _, out, _ = run(capsys, "sweep", "--help")
    for flag in ("--config", "--arch", "--depth", "--widths", "--activation", "--dataset", "--data-path", "--n-train",
                 "--n-test", "--noise-std", "--parameterisations", "--sampler", "--num-warmup", "--num-samples",
                 "--num-chains", "--seeds", "--out", "--shard", "--residual-scaling", "--target-accept",
                 "--report", "--no-report", "--quiet", "--dtype"):
        assert flag in out


def test_datasets_table(capsys):
    code, out, _ = run(capsys, "datasets")
    assert code == 0
    for name in ("synthetic", "digits", "diabetes", "cifar10", "npz", "csv"):
        assert name in out


def test_console_script_one_line_error():
    script = Path(sys.executable).with_name("reprior")
    if not script.exists():
        pytest.skip("the reprior console script is not installed next to this Python")
    proc = subprocess.run([str(script), "sweep", "--widths", "-3"], capture_output=True, text=True, timeout=300)
    assert_one_line_error(proc.returncode, proc.stderr)
    assert "--widths" in proc.stderr


# ---------------------------------------------------------------------------
# Bad input: one line, exit status 2, no traceback
# ---------------------------------------------------------------------------

BAD_FLAGS = {
    "unknown flag": (["sweep", "--frobnicate"], "unrecognized arguments"),
    "bad width": (["sweep", "--widths", "64", "-3"], "--widths"),
    "width not a number": (["sweep", "--widths", "wide"], "--widths"),
    "bad shard": (["sweep", "--shard", "3/2"], "--shard"),
    "shard not I/K": (["sweep", "--shard", "two"], "--shard"),
    "unknown dataset": (["sweep", "--dataset", "mnist", "--dry-run"], "mnist"),
    "unknown sampler": (["sweep", "--sampler", "mala", "--dry-run"], "mala"),
    "unknown activation": (["sweep", "--activation", "swish", "--dry-run"], "swish"),
    "unknown parameterisation": (["sweep", "--parameterisations", "sampled"], "--parameterisations"),
    "zero chains": (["sweep", "--num-chains", "0"], "--num-chains"),
    "bad target accept": (["sweep", "--target-accept", "1.5"], "--target-accept"),
    "bad noise": (["sweep", "--noise-std", "0"], "--noise-std"),
    "resnet depth": (["sweep", "--arch", "resnet", "--depth", "5", "--dry-run"], "6k + 2"),
    "resnet on tables": (["sweep", "--arch", "resnet", "--dataset", "diabetes", "--dry-run"], "image"),
    "missing data file": (["sweep", "--dataset", "npz", "--data-path", "{tmp}/missing.npz", "--dry-run"],
                          "does not exist"),
    "missing cifar dir": (["sweep", "--dataset", "cifar10", "--data-path", "{tmp}/nocifar", "--dry-run"],
                          "nocifar"),
    "path for built-in data": (["sweep", "--dataset", "digits", "--data-path", "{tmp}", "--dry-run"], "path"),
    "unknown loader option": (["sweep", "--dataset", "synthetic", "--dataset-option", "colour=1", "--dry-run"],
                              "colour"),
    "unknown sampler option": (["sweep", "--sampler-option", "max_depth=3", "--dry-run"], "max_depth"),
    "bad option syntax": (["sweep", "--sampler-option", "max_tree_depth"], "KEY=VALUE"),
    "too many points": (["sweep", "--dataset", "diabetes", "--n-train", "5000", "--dry-run"], "n_train"),
    "missing config": (["sweep", "--config", "{tmp}/nope.toml"], "does not exist"),
    "no subcommand": ([], "required"),
    "unknown subcommand": (["sweeep"], "invalid choice"),
    "report of nothing": (["report", "{tmp}"], "expected finished cells under"),
    "report of no dir": (["report", "{tmp}/nodir"], "does not exist"),
}


@pytest.mark.parametrize("argv, match", list(BAD_FLAGS.values()), ids=list(BAD_FLAGS))
def test_bad_input_is_one_line(capsys, tmp_path, argv, match):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    code, _, err = run(capsys, *argv, *(["--out", tmp_path / "out"] if argv[:1] == ["sweep"] else []))
    assert_one_line_error(code, err)
    assert match in err


@pytest.mark.parametrize("text, match", [
    ("widths = [64,\n", "not valid TOML"),
    ("[sweep]\nwidths = [64]\n", "unknown key 'sweep'"),
    ("wdiths = [64]\n", "unknown key 'wdiths'"),
    ("widths = [-1]\n", "widths"),
    ("widths = 'many'\n", "widths"),
    ("num_chains = 2.5\n", "num_chains"),
    ("noise_std = 'low'\n", "noise_std"),
    ("sampler_options = 3\n", "sampler_options"),
])
def test_bad_config_is_one_line(capsys, tmp_path, text, match):
    config = tmp_path / "bad.toml"
    config.write_text(text)
    code, _, err = run(capsys, "sweep", "--config", config, "--dry-run", "--out", tmp_path / "out")
    assert_one_line_error(code, err)
    assert match in err


# ---------------------------------------------------------------------------
# Config files, dry runs, shards, dtype
# ---------------------------------------------------------------------------


def test_config_and_flags_in_a_dry_run(capsys, tmp_path):
    config = tmp_path / "exp.toml"
    config.write_text('dataset = "synthetic"\nn_train = 8\nn_test = 4\nwidths = [4, 8, 16]\n'
                      'parameterisations = ["standard", "reprior", "reprior-sampled"]\nseeds = [0, 1]\n')
    code, out, _ = run(capsys, "sweep", "--config", config, "--dry-run", "--out", tmp_path / "out")
    assert code == 0
    assert "18 cells in the grid" in out
    code, out, _ = run(capsys, "sweep", "--config", config, "--widths", "4", "--seeds", "3", "--dry-run",
                       "--out", tmp_path / "out")
    assert "3 cells in the grid" in out and "seed 3" in out and "w16" not in out


def _dry_run_keys(capsys, tmp_path, *extra):
    code, out, _ = run(capsys, "sweep", "--dataset", "synthetic", "--n-train", "8", "--widths", "4", "8", "16",
                       "--parameterisations", "standard", "reprior", "reprior-sampled", "--seeds", "0", "1",
                       "--dry-run", "--out", tmp_path / "out", *extra)
    assert code == 0
    return [line.split()[0] for line in out.splitlines() if re.match(r"^[0-9a-f]{16} ", line)]


def test_shards_through_the_cli(capsys, tmp_path):
    everything = _dry_run_keys(capsys, tmp_path)
    assert len(everything) == 18
    shards = [_dry_run_keys(capsys, tmp_path, "--shard", f"{i}/4") for i in range(4)]
    assert sorted(k for s in shards for k in s) == sorted(everything)
    assert len({k for s in shards for k in s}) == 18


def test_dtype_flag_and_global_flag_restored(capsys, tmp_path):
    before = jax.config.jax_enable_x64
    keys64 = _dry_run_keys(capsys, tmp_path, "--dtype", "float64")
    keys32 = _dry_run_keys(capsys, tmp_path, "--dtype", "float32")
    assert not set(keys64) & set(keys32)  # dtype is part of the cell
    assert jax.config.jax_enable_x64 == before


# ---------------------------------------------------------------------------
# Every data set loader through the CLI
# ---------------------------------------------------------------------------

LOADERS = {  # name: (arch, shape of x_train)
    "synthetic": ("mlp", "(8, 4)"), "digits": ("mlp", "(8, 64)"), "diabetes": ("mlp", "(8, 10)"),
    "npz": ("mlp", "(8, 3)"), "csv": ("mlp", "(8, 3)"), "cifar10": ("mlp", "(8, 3072)"),
    "digits-images": ("resnet", "(8, 8, 8, 1)"), "cifar10-images": ("resnet", "(8, 32, 32, 3)"),
}


@pytest.mark.parametrize("name", list(LOADERS))
def test_every_loader_through_the_cli(capsys, tmp_path, name):
    arch, shape = LOADERS[name]
    code, out, err = run(capsys, "sweep", *data_flags(name.split("-")[0], tmp_path), "--arch", arch,
                         "--widths", "2", "--n-train", "8", "--n-test", "4", "--dry-run", "--out", tmp_path / "out")
    assert code == 0, err
    assert f"x_train {shape}" in out


@pytest.mark.slow
@pytest.mark.parametrize("name", ["digits", "diabetes", "npz", "csv", "cifar10", "digits-images"])
def test_every_loader_samples(capsys, tmp_path, name):
    arch = LOADERS[name][0]
    code, out, err = run(capsys, "sweep", *data_flags(name.split("-")[0], tmp_path), "--arch", arch,
                         "--widths", "2", "--parameterisations", "reprior", *TINY, "--no-report",
                         "--out", tmp_path / "out")
    assert code == 0, out + err
    (metrics,) = (tmp_path / "out" / "cells").glob("*/metrics.json")
    record = json.loads(metrics.read_text())
    assert record["settings"]["dataset"] == name.split("-")[0]
    assert np.isfinite(record["metrics"]["test_rmse"])


# ---------------------------------------------------------------------------
# A real sweep, its resume and its report
# ---------------------------------------------------------------------------


@pytest.mark.e2e  # a CLI sweep, resumed, then reported: about 40 s
def test_sweep_resume_and_report(capsys, tmp_path):
    pytest.importorskip("reprior.experiments.report")
    out_dir = tmp_path / "out"
    argv = ["sweep", "--dataset", "synthetic", "--widths", "3", "5", "--parameterisations", "standard", "reprior",
            *TINY, "--out", out_dir]
    code, out, err = run(capsys, *argv)
    assert code == 0, out + err
    assert "report:" in out and str(out_dir / "report.md") in out
    cells = sorted((out_dir / "cells").glob("*/metrics.json"))
    assert len(cells) == 4
    for path in cells:
        for name in ("settings.json", "idata.nc", "metrics.json"):
            assert (path.parent / name).is_file()
    mtimes = {p: p.stat().st_mtime_ns for p in out_dir.glob("cells/*/*")}

    # summary.csv: the schema
    with open(out_dir / "summary.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 4
    missing = [c for c in REQUIRED_COLUMNS if c not in rows[0]]
    assert not missing
    assert {(r["width"], r["parameterisation"], r["readout"]) for r in rows} == {
        ("3", "standard", "sampled"), ("3", "reprior", "exact"), ("5", "standard", "sampled"),
        ("5", "reprior", "exact")}
    for row in rows:
        assert float(row["grad_evals"]) > 0 and float(row["sample_seconds"]) > 0
        assert float(row["num_samples"]) == 8 and float(row["num_chains"]) == 2
        assert np.isfinite(float(row["ess_bulk_pred_median"])) and np.isfinite(float(row["test_rmse"]))
    for name in ("report.md", "report.html"):
        assert (out_dir / name).stat().st_size > 0
    assert list((out_dir / "plots").glob("*.png"))

    # rerun: every cell skipped, nothing rewritten
    code, out, _ = run(capsys, *argv, "--no-report")
    assert code == 0
    assert "4 already finished, 0 to run" in out
    assert {p: p.stat().st_mtime_ns for p in out_dir.glob("cells/*/*")} == mtimes

    # a wider grid: only the new cells are to run
    code, out, _ = run(capsys, *argv[:4], "3", "5", "7", *argv[6:], "--dry-run")
    assert code == 0 and out.count(" finished ") == 4 and out.count(" todo ") == 2

    # reprior report DIR over all cells
    (out_dir / "summary.csv").unlink()
    code, out, _ = run(capsys, "report", out_dir)
    assert code == 0 and "summary.csv" in out
    with open(out_dir / "summary.csv", newline="") as handle:
        assert len(list(csv.DictReader(handle))) == 4
    assert "reprior sweep" in (out_dir / "report.md").read_text()  # the command is quoted

    # a cell written before a metric existed: the report recomputes it from idata.nc, metrics.json untouched
    with open(out_dir / "summary.csv", newline="") as handle:
        before = {r["cell"]: r for r in csv.DictReader(handle)}
    path = cells[0]
    record = json.loads(path.read_text())
    del record["metrics"]["ess_per_eval_pred"], record["metrics"]["logdensity_evals"]
    path.write_text(json.dumps(record))
    (path.parent / "manifest.json").unlink()  # an older reprior wrote no manifest: checked by opening idata.nc
    code, out, _ = run(capsys, "report", out_dir)
    assert code == 0
    with open(out_dir / "summary.csv", newline="") as handle:
        after = {r["cell"]: r for r in csv.DictReader(handle)}
    assert after == before
    assert "ess_per_eval_pred" not in json.loads(path.read_text())["metrics"]


# ---------------------------------------------------------------------------
# Presets and docs
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("preset", sorted(p.stem for p in EXPERIMENTS.glob("*.toml")))
def test_presets_are_valid(capsys, tmp_path, preset):
    """Every preset in experiments/ validates and expands (a dry run)."""
    config = EXPERIMENTS / f"{preset}.toml"
    argv = ["sweep", "--config", config, "--dry-run", "--out", tmp_path / "out"]
    if "cifar" in config.read_text():
        argv += ["--dataset", "digits"]  # the CIFAR-10 variants need files on disk
    code, out, err = run(capsys, *argv)
    assert code == 0, err
    assert "cells in the grid" in out


def _tutorial_steps() -> list[tuple[str, object]]:
    """The tutorial's bash blocks, in order: ("file", (name, text)) for heredocs, ("reprior", argv)."""
    text = (DOCS / "tutorial_width_sweep.md").read_text()
    steps = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        lines = iter(block.replace("\\\n", " ").splitlines())
        for line in lines:
            line = line.strip()
            heredoc = re.match(r"cat > (\S+) <<'EOF'$", line)
            if heredoc:
                body = []
                for inner in lines:
                    if inner.strip() == "EOF":
                        break
                    body.append(inner)
                steps.append(("file", (heredoc.group(1), "\n".join(body) + "\n")))
            elif line.startswith("reprior "):
                steps.append(("reprior", line.split()[1:]))
    return steps


def test_tutorial_commands_parse(capsys, tmp_path, monkeypatch):
    """Every sweep of the tutorial plans (--dry-run) and loads its data."""
    monkeypatch.chdir(tmp_path)
    steps = _tutorial_steps()
    assert sum(kind == "reprior" for kind, _ in steps) >= 6
    for kind, step in steps:
        if kind == "file":
            Path(step[0]).write_text(step[1])
        elif step[0] == "sweep":
            code, _, err = run(capsys, *step, "--dry-run")
            assert code == 0, (step, err)
        elif step[0] == "datasets":
            assert run(capsys, *step)[0] == 0


@pytest.mark.slow
def test_tutorial_runs(capsys, tmp_path, monkeypatch):
    """Every command of the tutorial, in order, in a scratch directory."""
    pytest.importorskip("reprior.experiments.report")
    monkeypatch.chdir(tmp_path)
    for kind, step in _tutorial_steps():
        if kind == "file":
            Path(step[0]).write_text(step[1])
            continue
        code, out, err = run(capsys, *step)
        assert code == 0, (step, out, err)
    with open(tmp_path / "runs" / "tutorial" / "summary.csv", newline="") as handle:
        assert len(list(csv.DictReader(handle))) == 16  # 4 widths x 2 parameterisations x 2 seeds


# ---------------------------------------------------------------------------
# References and the cost-to-accuracy verdict
# ---------------------------------------------------------------------------

REF_GRID = ["--dataset", "synthetic", "--widths", "4", "--n-train", "8", "--n-test", "3"]
OTHER_ID = "0123456789abcdef"


def _tiny_reference(reference_id: str, *, certified: bool = True) -> reprior.ReferencePosterior:
    """A well-formed reference file of 3 test inputs and 1 output, built without sampling."""
    from reprior.evaluation.reference import ReferencePosterior

    ones = np.ones((3, 1))
    return ReferencePosterior(mean=0 * ones, var=ones, second_moment=ones, second_moment_var=2 * ones,
                              rb_mean=0 * ones, rb_var=ones, diagnostics={"certified": certified},
                              reference_id=reference_id, x_test_digest="0" * 16)


def _grid_reference_id(tmp_path: Path) -> str:
    """The reference id of the cells of ``REF_GRID`` (one setting), as the sweep computes it."""
    from reprior._util.choices import default_dtype
    from reprior.experiments.runner import sweep
    from reprior.experiments.runner.references import cell_reference_id

    options = cli.sweep_options(cli.build_parser().parse_args(["sweep", *REF_GRID, "--out", str(tmp_path)]))
    _, cells = sweep.plan(options, dtype=default_dtype())
    ids = {cell_reference_id(c.settings, sweep.build_bnn(c.settings), sweep.load_cell_data(c.settings)) for c in cells}
    assert len(ids) == 1
    return ids.pop()


def _reference_inputs(tmp_path: Path) -> dict[str, str]:
    """The files the bad-reference cases name: ``{placeholder: path}``."""
    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(np.random.default_rng(0).bytes(512))
    truncated = tmp_path / "truncated.npz"
    _tiny_reference(OTHER_ID).save(truncated)
    truncated.write_bytes(truncated.read_bytes()[:200])
    other = _tiny_reference(OTHER_ID).save(tmp_path / "other.npz")
    uncertified = _tiny_reference(_grid_reference_id(tmp_path), certified=False).save(tmp_path / "uncertified.npz")
    empty = tmp_path / "no_references"
    empty.mkdir()
    return {"{corrupt}": str(corrupt), "{truncated}": str(truncated), "{other}": str(other),
            "{uncertified}": str(uncertified), "{empty}": str(empty)}


#: name: (flags, config file text or None, fragments of the one-line message)
BAD_REFERENCE_INPUT = {
    **{f"threshold {v}": (["--b2-threshold", v], None, ["argument --b2-threshold", "(0, 1)", f"'{v}'"])
       for v in ("0", "1", "1.5", "-0.1", "abc")},
    "threshold 1.0 in a config": ([], "b2_threshold = 1.0\n", ["b2_threshold (--b2-threshold)", "(0, 1)", "1.0"]),
    "threshold text in a config": ([], "b2_threshold = 'low'\n", ["b2_threshold (--b2-threshold)", "'low'"]),
    "missing reference": (["--reference", "/nonexistent/path"], None,
                          ["reference (--reference)", "/nonexistent/path", "does not exist"]),
    "corrupt reference": (["--reference", "{corrupt}"], None,
                          ["argument `reference`", "a reference file written by reprior", "{corrupt}"]),
    "truncated reference": (["--reference", "{truncated}"], None,
                            ["argument `reference`", "a reference file written by reprior", "{truncated}"]),
    "reference for other inputs": (["--reference", "{other}"], None,
                                   ["argument `reference`", "a reference built for this setting", "{other}",
                                    f"built for {OTHER_ID}"]),
    "uncertified reference": (["--reference", "{uncertified}"], None,
                              ["argument `reference`", "a certified reference", "{uncertified}", "not certified"]),
    "folder without the reference": (["--reference", "{empty}"], None,
                                     ["argument `reference`", "a folder holding the reference", "{empty}",
                                      "which has none"]),
    "one reference kernel": ([], 'reference_samplers = ["nuts"]\n',
                             ["reference_samplers (--reference-samplers)", "two or more different kernel names",
                              "['nuts']"]),
    "one reference kernel flag": (["--reference-samplers", "nuts"], None,
                                  ["reference_samplers (--reference-samplers)", "two or more", "['nuts']"]),
    "unknown reference kernel": ([], 'reference_samplers = ["nuts", "nosuch"]\n',
                                 ["reference_samplers (--reference-samplers)", "expected one of", "'nosuch'"]),
    "thinning of an unused kernel": ([], "reference_thinning = {nosuch = 2}\n",
                                     ["reference_thinning (--reference-thinning)", "keyed by reference_samplers",
                                      "'nosuch'"]),
    "max draws below draws": ([], "reference_num_samples = 100\nreference_max_num_samples = 50\n",
                              ["reference_max_num_samples (--reference-max-num-samples)",
                               "at least reference_num_samples (100)", "50"]),
    "max draws below draws flags": (["--reference-num-samples", "100", "--reference-max-num-samples", "50"], None,
                                    ["reference_max_num_samples (--reference-max-num-samples)",
                                     "at least reference_num_samples (100)", "50"]),
}


@pytest.mark.parametrize("command", ["sweep", "reference"])
@pytest.mark.parametrize("flags, config, fragments", list(BAD_REFERENCE_INPUT.values()),
                         ids=list(BAD_REFERENCE_INPUT))
def test_bad_reference_input_is_one_line_and_writes_nothing(capsys, tmp_path, command, flags, config, fragments):
    paths = _reference_inputs(tmp_path) if any("{" in f for f in flags) else {}

    def fill(text):
        for placeholder, path in paths.items():
            text = text.replace(placeholder, path)
        return text

    argv = [command, *REF_GRID, "--out", tmp_path / "out"]
    if config is not None:
        (tmp_path / "exp.toml").write_text(config)
        argv += ["--config", tmp_path / "exp.toml"]
    if command == "reference":
        argv += ["--reference", "auto"]  # the case's own --reference, given after, wins
    code, _, err = run(capsys, *argv, *map(fill, flags))
    assert_one_line_error(code, err)
    for fragment in map(fill, fragments):
        assert fragment in err, err
    assert not (tmp_path / "out").exists()  # refused before anything is written


def test_reference_command_refuses_reference_off(capsys, tmp_path):
    code, _, err = run(capsys, "reference", *REF_GRID, "--out", tmp_path / "out", "--reference", "off")
    assert_one_line_error(code, err)
    assert "reference (--reference): expected auto or a path, received 'off': nothing to build" in err
    assert not (tmp_path / "out").exists()


ACCURACY_COLUMNS = ["b2_pred_mean", "b2_pred_second", "b2_rb_mean", "b2_threshold", "b2_reached", "grads_to_b2",
                    "evals_to_b2", "seconds_to_b2", "budget_grads", "budget_evals", "budget_seconds", "reference_id",
                    "reference_failure"]
# A tiny grid (two cells of one setting) and a reference budget far too small to certify.
VERDICT_GRID = [*REF_GRID, "--num-warmup", "20", "--num-samples", "30", "--num-chains", "2", "--sampler", "hmc",
                "--sampler-option", "num_steps=3"]
SMALL_REFERENCE = ["--reference", "auto", "--reference-num-chains", "2", "--reference-num-warmup", "20",
                   "--reference-num-samples", "20", "--reference-max-num-samples", "20"]


def _summary_rows(out: Path) -> list[dict]:
    with open(out / "summary.csv", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.e2e  # a reference that fails certification, two sweeps of two cells: 25 s (60 s compiling afresh)
def test_an_uncertified_reference_is_refused_and_the_sweep_goes_on(capsys, tmp_path):
    pytest.importorskip("reprior.experiments.report")
    out = tmp_path / "out"

    # reprior reference: one line naming the setting and a failing figure, the failure stored
    code, _, err = run(capsys, "reference", *VERDICT_GRID, *SMALL_REFERENCE, "--out", out)
    assert_one_line_error(code, err)
    [folder] = (out / "references").iterdir()
    assert f"reference {folder.name} (mlp d1 w4 noise 0.1 n_train 8): no certified reference: " in err
    assert "ESS" in err and "< 400" in err
    record = json.loads((folder / "diagnostics.json").read_text())
    assert record["certified"] is False and record["reference_id"] == folder.name
    assert record["diagnostics"]["failures"] and not (folder / "reference.npz").exists()
    assert not (out / "cells").exists()
    stored = (folder / "diagnostics.json").read_bytes()

    # reprior sweep: the verdict "no certified reference" in every cell, the sweep finishes
    code, stdout, err = run(capsys, "sweep", *VERDICT_GRID, *SMALL_REFERENCE, "--quiet", "--out", out)
    assert code == 0, stdout + err
    assert [p.name for p in (out / "references").iterdir()] == [folder.name]  # one setting, one reference
    assert (folder / "diagnostics.json").read_bytes() == stored  # the stored failure reused, not rebuilt
    rows = _summary_rows(out)
    assert len(rows) == 2 and {r["parameterisation"] for r in rows} == {"standard", "reprior"}
    assert not [c for c in ACCURACY_COLUMNS if c not in rows[0]]
    for row in rows:
        assert row["reference_failure"].startswith("no certified reference: ") and "ESS" in row["reference_failure"]
        assert row["b2_reached"] == "False" and float(row["b2_threshold"]) == 0.01
        assert all(np.isnan(float(row[c])) for c in ("b2_pred_mean", "grads_to_b2", "seconds_to_b2"))
        assert np.isfinite(float(row["ess_bulk_pred_median"]))  # its ESS figures are kept
    report = (out / "report.md").read_text()
    assert "Cost to accuracy" in report and "no certified reference" in report

    # --reference off: no reference, the verdict says so
    off = tmp_path / "off"
    code, stdout, err = run(capsys, "sweep", *VERDICT_GRID, "--reference", "off", "--quiet", "--out", off)
    assert code == 0, stdout + err
    rows = _summary_rows(off)
    assert len(rows) == 2 and {r["reference_failure"] for r in rows} == {"reference off"}
    assert {r["b2_reached"] for r in rows} == {"False"}
    assert not (off / "references").exists()


def test_strict_counts_failed_chains_and_warnings_go_to_the_cell_log(capsys, tmp_path, monkeypatch):
    """A cell's warnings land in cells/<key>/warnings.txt, not on the console; a cell whose chains
    failed is counted in the final line, and --strict makes that exit status 1."""
    import warnings

    from reprior.inference import health
    from reprior.experiments.runner import sweep as sweep_mod

    monkeypatch.setattr(health, "chain_failure", lambda metrics: "R-hat 1.5 > 1.1")  # every cell: failed chains
    run_cell = sweep_mod.run_cell

    def noisy(*args, **kwargs):
        warnings.warn("a dependency's notice", UserWarning)
        return run_cell(*args, **kwargs)

    monkeypatch.setattr(sweep_mod, "run_cell", noisy)
    out = tmp_path / "out"
    loud = [a for a in TINY if a != "--quiet"]
    code, stdout, err = run(capsys, "sweep", "--dataset", "synthetic", "--widths", "3", "--parameterisations",
                            "reprior", *loud, "--no-report", "--strict", "--out", out)
    assert code == 1, stdout + err
    [log] = (out / "cells").glob("*/warnings.txt")
    assert "UserWarning: a dependency's notice" in log.read_text()
    assert json.loads((log.parent / "metrics.json").read_text())["info"]["warnings"] == 1
    assert "a dependency's notice" not in stdout + err
    assert f"FAILED (R-hat 1.5 > 1.1); 1 warning in {log}" in stdout
    assert "done: 1 cells run (1 with failed chains), 0 skipped, 0 failed" in stdout
    assert "--strict: 1 cells finished with failed chains: " in stdout
    # without --strict the same sweep (finished: skipped now) exits 0; a fresh one says the count
    code, stdout, err = run(capsys, "sweep", "--dataset", "synthetic", "--widths", "3", "--parameterisations",
                            "reprior", *loud, "--no-report", "--out", tmp_path / "again")
    assert code == 0 and "(1 with failed chains)" in stdout


def test_report_counts_and_quotes_a_cells_warnings(capsys, tmp_path, monkeypatch):
    """The report's ``chains`` column counts a cell's warnings and its Warnings section quotes each
    distinct text once (without the raising file and line), pointing at the cell's warnings.txt."""
    import warnings

    from reprior.experiments.runner import sweep as sweep_mod

    run_cell = sweep_mod.run_cell

    def noisy(*args, **kwargs):
        for _ in range(2):
            warnings.warn("a dependency's notice", UserWarning)
        warnings.warn("another notice", RuntimeWarning)
        return run_cell(*args, **kwargs)

    monkeypatch.setattr(sweep_mod, "run_cell", noisy)
    out = tmp_path / "out"
    code, stdout, err = run(capsys, "sweep", "--dataset", "synthetic", "--widths", "3", "--parameterisations",
                            "reprior", *TINY, "--out", out)
    assert code == 0, stdout + err
    [log] = (out / "cells").glob("*/warnings.txt")
    cell = log.parent.name
    report = (out / "report.md").read_text()
    assert "3 warnings (see Warnings)" in report
    assert "1 of 1 cells raised warnings while sampling" in report
    [item] = [line for line in report.splitlines() if line.startswith(f"- `{cell}`")]
    assert item.endswith("3 warnings: UserWarning: a dependency's notice; RuntimeWarning: another notice"), item
    assert "warnings.txt" in report and "test_cli.py" not in item
