"""The ``reprior`` command line: ``sweep``, ``report``, ``datasets`` and ``sbc``.

``main(argv)`` is the console script's entry point.  It is the only place in
the package that changes JAX's global configuration: it turns float64 on or
off from ``--dtype`` (default float64 on CPU, float32 on accelerators)
before any computation, and restores the previous setting when it returns.

Every user error (a bad flag value, an unknown config key, bad TOML, a missing
data file, a bad sampler option, a cell too large for this machine) is one line
on stderr starting with ``reprior: error:`` and exit status 2, found before
anything runs or is written (:mod:`reprior.experiments.preflight`).  Set
``REPRIOR_TRACEBACK=1`` to see the traceback instead.  Ctrl-C exits 130 and
SIGTERM 143, after the run reaches a safe point (:mod:`reprior._util.interrupts`).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys

from reprior import __version__
from reprior._util.choices import CHAIN_METHODS, DTYPES, default_dtype
from reprior.experiments.runner import grid
from reprior.experiments.runner.executors import key_value

__all__ = ["add_sbc_arguments", "build_parser", "main", "sbc_command", "sweep_options"]

PROG = "reprior"


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line, ``reprior: error: ...``, and exit status 2, and that
    reads ``--shard -1/2`` as ``--shard=-1/2`` (:func:`_join_negative_values`)."""

    def parse_args(self, args=None, namespace=None):
        args = sys.argv[1:] if args is None else list(args)
        return super().parse_args(_join_negative_values(args), namespace)

    def error(self, message):
        self.exit(2, f"{PROG}: error: {message} (see '{self.prog} --help')\n")


class _UserError(Exception):
    """An error to report in one line with exit status 2."""


# ---------------------------------------------------------------------------
# Argument types
# ---------------------------------------------------------------------------


def _number_type(kind, accept, expected: str):
    """An argparse ``type``: ``kind(text)`` if it parses and ``accept`` s it, else a one-line error."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not accept(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, received {text!r}")
        return value

    return parse


_positive_int = _number_type(int, lambda v: v >= 1, "a positive integer")
_seed = _number_type(int, lambda v: 0 <= v <= grid.MAX_SEED, f"an integer in [0, {grid.MAX_SEED}]")
_nonnegative_int = _number_type(int, lambda v: v >= 0, "a non-negative integer")
_positive_float = _number_type(float, lambda v: 0 < v < float("inf"), "a positive number")
_probability = _number_type(float, lambda v: 0 < v < 1, "a number in (0, 1)")


def _noise_value(text: str):
    """``--noise-std``: a positive number, or the text of a prior on it (``HalfNormal(0.5)``: the noise
    is inferred), which the sweep's options check (:func:`reprior.experiments.runner.grid.validate`)."""
    if "(" in text:
        return text
    return _positive_float(text)


def _size_type(minimum: int, expected: str):
    """An argparse ``type`` for ``--n-train``/``--n-test``: ``all`` or an integer of at least ``minimum``."""
    number = _number_type(int, lambda v: v >= minimum, expected)

    def parse(text: str):
        return "all" if text == "all" else number(text)

    return parse


_train_size = _size_type(1, "a positive integer or all")
_test_size = _size_type(0, "a non-negative integer or all")


def _shard(text: str) -> tuple[int, int]:
    try:
        return grid.parse_shard(text)
    except grid.ConfigError:
        raise argparse.ArgumentTypeError(f"expected I/K with integers 0 <= I < K (e.g. 0/4), "
                                         f"received {text!r}") from None


# ---------------------------------------------------------------------------
# The parser
# ---------------------------------------------------------------------------

#: sweep flags: (flags, option name, add_argument keywords).  All default to None, so that a
#: flag given overrides the config file and a flag not given does not.
_SWEEP_FLAGS = [
    (("--arch",), "archs", dict(nargs="+", metavar="ARCH")),  # choices and help: _arch_flag(), when parsing
    (("--depth",), "depths", dict(nargs="+", type=_positive_int, metavar="D",
                                  help="MLP hidden layers (default 1); ResNet depth 6k+2 (default 8)")),
    (("--widths",), "widths", dict(nargs="+", type=_positive_int, metavar="W",
                                   help="hidden widths (default: 64 256 1024)")),
    (("--activation",), "activations", dict(nargs="+", metavar="NAME",
                                            help="relu, erf, gelu, tanh (default: relu)")),
    (("--residual-scaling",), "residual_scalings", dict(nargs="+", choices=("uniform", "progressive"),
                                                        metavar="SCALING",
                                                        help="ResNet: uniform or progressive (default: uniform)")),
    (("--dataset",), "datasets", dict(nargs="+", metavar="NAME",
                                      help="data set(s), see `reprior datasets` (default: digits)")),
    (("--data-path",), "data_path", dict(metavar="PATH", help="file or directory for cifar10, npz and csv")),
    (("--n-train",), "n_train", dict(nargs="+", type=_train_size, metavar="N",
                                     help="training points, or all (every point the test set leaves) "
                                          "(default: the data set's own, see `reprior datasets`)")),
    (("--n-test",), "n_test", dict(type=_test_size, metavar="N",
                                   help="test points (0: none), or all (default: the data set's own)")),
    (("--data-seed",), "data_seed", dict(type=_seed, metavar="S",
                                         help="seed of the data subset (default: 0)")),
    (("--noise-std",), "noise_std", dict(nargs="+", type=_noise_value, metavar="SIGMA",
                                         help="observation noise std (default: 0.1), or a prior on it to "
                                              "infer it, e.g. 'HalfNormal(0.5)'")),
    (("--parameterisations",), "parameterisations", dict(nargs="+", choices=tuple(grid.PARAMETERISATIONS),
                                                         metavar="P",
                                                         help="standard, reprior, reprior-sampled "
                                                              "(default: standard reprior)")),
    (("--sampler",), "samplers", dict(nargs="+", metavar="NAME", help="sampler(s) (default: nuts)")),
    (("--target-accept",), "target_accept", dict(type=_probability, metavar="P",
                                                 help="target acceptance probability of the adaptation")),
    (("--num-warmup",), "num_warmup", dict(type=_nonnegative_int, metavar="N",
                                           help="warm-up iterations per chain (default: 300)")),
    (("--num-samples",), "num_samples", dict(type=_positive_int, metavar="N",
                                             help="draws per chain (default: 300)")),
    (("--num-chains",), "num_chains", dict(type=_positive_int, metavar="N", help="chains (default: 2)")),
    (("--thinning",), "thinning", dict(type=_positive_int, metavar="N", help="iterations per draw (default: 1)")),
    (("--seeds",), "seeds", dict(nargs="+", type=_seed, metavar="S",
                                 help="sampler seeds (default: 0)")),
    (("--chain-method",), "chain_method", dict(choices=CHAIN_METHODS,
                                               help="how chains run (default: sequential)")),
    (("--keep",), "keep", dict(choices=grid.KEEP,
                               help="parameters stored per draw (default: auto, by size)")),
    (("--num-projections",), "num_projections", dict(type=_nonnegative_int, metavar="N",
                                                     help="random projections of theta and phi (default: 10)")),
    (("--dtype",), "dtype", dict(choices=DTYPES, help="default: float64 on CPU, float32 on accelerators")),
    (("--reference",), "reference", dict(metavar="auto|off|PATH",
                                         help="reference posteriors for the cost-to-accuracy verdict: built on "
                                              "demand (auto), none (off, default), or read from PATH")),
    (("--reference-samplers",), "reference_samplers", dict(nargs="+", metavar="NAME",
                                                           help="kernels of the reference chains (default: nuts "
                                                                "pcnl)")),
    (("--reference-num-chains",), "reference_num_chains", dict(type=_positive_int, metavar="N",
                                                               help="chains per reference kernel (default: 4)")),
    (("--reference-num-warmup",), "reference_num_warmup", dict(type=_nonnegative_int, metavar="N",
                                                               help="reference warm-up per chain (default: 500)")),
    (("--reference-num-samples",), "reference_num_samples", dict(type=_positive_int, metavar="N",
                                                                 help="reference draws per chain (default: 2000)")),
    (("--reference-max-num-samples",), "reference_max_num_samples",
     dict(type=_positive_int, metavar="N", help="rebuild an uncertified reference with more draws (at least "
                                                "twice), up to N per chain (default: 8000)")),
    (("--reference-thinning",), "reference_thinning", dict(type=_positive_int, metavar="N",
                                                           help="iterations per reference draw (default: 1)")),
    (("--b2-threshold",), "b2_threshold", dict(type=_probability, metavar="T",
                                               help="accuracy threshold of the verdict, in (0, 1) (default: 0.01)")),
    (("--out",), "out", dict(metavar="DIR", help="output directory (default: runs/<config name> or runs/sweep)")),
    (("--report",), "report", dict(action=argparse.BooleanOptionalAction,
                                   help="write the report at the end (default: yes)")),
]


class _ArchChoices(tuple):
    """The registered names, and any ``MODULE:CALLABLE`` (checked when the options are validated)."""

    def __contains__(self, value):
        return tuple.__contains__(self, value) or (isinstance(value, str) and ":" in value)


def _arch_flag(kwargs: dict) -> dict:
    """``--arch``: the architectures registered now (:mod:`reprior.core.architectures.registry`) as choices."""
    from reprior.core.architectures.registry import architecture_names

    names = architecture_names()
    return dict(kwargs, choices=_ArchChoices(names),
                help=f"architectures: {', '.join(names)}, or MODULE:CALLABLE / FILE.py:CALLABLE returning "
                     "one (see docs/your_model.md) (default: mlp)")


def _add_grid_arguments(p) -> None:
    """The flags that define a grid (shared by ``sweep`` and ``reference``)."""
    p.add_argument("--config", metavar="FILE.toml", help="a TOML sweep file (see docs/cli.md)")
    for flags, dest, kwargs in _SWEEP_FLAGS:
        p.add_argument(*flags, dest=dest, default=None, **(_arch_flag(kwargs) if dest == "archs" else kwargs))
    p.add_argument("--dataset-option", dest="dataset_options", action="append", type=key_value, default=None,
                   metavar="KEY=VALUE", help="loader option, repeatable (e.g. target_columns='[\"y\"]')")
    p.add_argument("--sampler-option", dest="sampler_options", action="append", type=key_value, default=None,
                   metavar="[SAMPLER:]KEY=VALUE",
                   help="sampler setting, repeatable: KEY=VALUE for every sampler of the sweep that takes KEY "
                        "(e.g. max_tree_depth=8), SAMPLER:KEY=VALUE for one (e.g. nuts:max_tree_depth=6)")
    p.add_argument("--shard", type=_shard, metavar="I/K", help="run only shard I of K (0 <= I < K)")
    p.add_argument("--force", action="store_true",
                   help="write into a non-empty --out that reprior did not make (default: refuse it)")


def _add_reference(subparsers) -> None:
    p = subparsers.add_parser(
        "reference", help="build the certified reference posteriors of a sweep ahead of it",
        description="Build (or load) the reference posterior of every setting of a sweep's grid under "
                    "OUT/references (one per data, architecture, width, noise and dtype), with the same "
                    "config file and flags as `reprior sweep`. Exit status 2 if one cannot be certified.")
    _add_grid_arguments(p)
    p.add_argument("--yes", action="store_true", help="use the built-in default grid without a config file")
    p.add_argument("--dry-run", action="store_true", help=argparse.SUPPRESS)
    p.set_defaults(func=_cmd_reference)


def _cmd_reference(args, argv) -> int:
    from reprior._util import interrupts
    from reprior.experiments import preflight
    from reprior.experiments.runner import ownership, references, sweep

    with interrupts.deferred():
        options = sweep_options(args)
        _refuse_default_grid(args)
        if options["reference"] == "off" and args.reference is None:  # the default: this command builds them
            options["reference"] = "auto"
        if options["reference"] == "off":
            raise _UserError("reference (--reference): expected auto or a path, received 'off': nothing to build")
        dtype = _set_dtype(options["dtype"])
        _, cells = sweep.plan(options, dtype=dtype, shard=args.shard)
        datasets = preflight.check_sweep(options, cells, force=args.force)
        ownership.claim(options["out"], "out (--out)", force=args.force)
        outcomes = references.build_references(options, cells, datasets, console=sweep._console())
    failed = {rid: o for rid, o in outcomes.items() if not o["certified"]}
    print(f"{len(outcomes) - len(failed)} of {len(outcomes)} references certified under "
          f"{os.path.join(options['out'], references.REFERENCES_DIR)}")
    if failed:
        return _error("; ".join(f"reference {rid} ({o['setting']}): {o['failure']}" for rid, o in failed.items()))
    return 0


def _add_sweep(subparsers) -> None:
    p = subparsers.add_parser(
        "sweep", help="run a grid of sampling runs (resumable, shardable)",
        description="Run every cell of a grid of reprior.sample runs; finished cells are skipped, so "
                    "rerunning resumes. Flags override the config file, which overrides the defaults.")
    _add_grid_arguments(p)
    p.add_argument("--dry-run", action="store_true", help="list the cells (and which are finished); run nothing")
    p.add_argument("--quiet", action="store_true", help="no progress bars or per-cell lines")
    p.add_argument("--strict", action="store_true",
                   help="exit with status 1 when a cell finishes with failed chains (R-hat, divergences, ...)")
    p.add_argument("--yes", action="store_true",
                   help="run the built-in default grid (hours on a laptop) without a config file or --widths")
    from reprior.experiments.runner import executors

    executors.add_arguments(p)  # --executor, --jobs, --slurm-*, --wait, --checkpoint-every
    p.set_defaults(func=_cmd_sweep)


def _add_report(subparsers) -> None:
    p = subparsers.add_parser("report", help="write summary.csv, report.md/.html and plots of a sweep",
                              description="Read every finished cell under DIR/cells and write DIR/summary.csv, "
                                          "DIR/report.md, DIR/report.html and DIR/plots/*.png.")
    p.add_argument("dir", metavar="DIR", help="the sweep's output directory")
    p.set_defaults(func=_cmd_report)


def _add_datasets(subparsers) -> None:
    p = subparsers.add_parser("datasets", help="list the data sets", description="List the data sets.")
    p.set_defaults(func=_cmd_datasets)


def _add_sbc(subparsers) -> None:
    from reprior.experiments import sbc

    p = subparsers.add_parser("sbc", help="simulation-based calibration of a sampler",
                              description=(sbc.__doc__ or "").strip().split("\n")[0])
    add_sbc_arguments(p)
    p.set_defaults(func=_cmd_sbc)


def add_sbc_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``reprior sbc`` options (the arguments of :func:`reprior.experiments.sbc.run_sbc`) to ``parser``."""
    from reprior.core.architectures.layers import ACTIVATIONS
    from reprior.inference.kernels import kernel_names
    from reprior.core.target import PARAMETERISATIONS, READOUTS

    parser.add_argument("--sampler", default="elliptical_slice",
                        help=f"registered kernel: {', '.join(kernel_names())} (default: elliptical_slice)")
    parser.add_argument("--parameterisation", default="reprior", choices=PARAMETERISATIONS)
    parser.add_argument("--readout", default="exact", choices=READOUTS)
    parser.add_argument("--sampler-option", action="append", default=[], type=key_value, metavar="KEY=VALUE",
                        help="kernel setting, repeatable (e.g. target_accept_prob=0.9)")
    parser.add_argument("--num-replications", type=int, default=200)
    parser.add_argument("--num-draws", type=int, default=19, help="kept draws L per replication")
    parser.add_argument("--thinning", type=int, default=10)
    parser.add_argument("--num-warmup", type=int, default=200)
    parser.add_argument("--width", type=int, default=8)
    parser.add_argument("--depth", type=int, default=1)
    parser.add_argument("--activation", default="relu", choices=tuple(ACTIVATIONS))
    parser.add_argument("--num-data", type=int, default=10)
    parser.add_argument("--in-dim", type=int, default=2)
    parser.add_argument("--noise-std", type=float, default=0.5)
    parser.add_argument("--sampler-noise-std", type=float, default=None,
                        help="noise std of the sampler's likelihood (default: --noise-std; differ to test power)")
    parser.add_argument("--noise-prior", default=None, metavar="PRIOR",
                        help="calibrate an inferred noise: each replication draws its noise from PRIOR "
                             "(e.g. 'HalfNormal(0.5)'; --noise-std unused) and the sampler infers it")
    parser.add_argument("--sampler-noise-prior", default=None, metavar="PRIOR",
                        help="the noise prior the sampler assumes (default: --noise-prior; differ to test power)")
    parser.add_argument("--num-bins", type=int, default=10)
    parser.add_argument("--level", type=float, default=0.01, help="family-wise level (Bonferroni over summaries)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--dtype", default=None, choices=DTYPES)
    parser.add_argument("--plot", default=None, metavar="PATH", help="write the rank histograms (PNG/PDF/SVG)")
    parser.add_argument("--json", default=None, metavar="PATH", help="write the result as JSON")


def sbc_command(args: argparse.Namespace) -> int:
    """Run ``reprior sbc``: print the table, write the plot and JSON; 0 if uniform, 1 if rejected."""
    from reprior.experiments import sbc

    result = sbc.run_sbc(
        sampler=args.sampler, parameterisation=args.parameterisation, readout=args.readout,
        sampler_options=dict(args.sampler_option), num_replications=args.num_replications,
        num_draws=args.num_draws, thinning=args.thinning, num_warmup=args.num_warmup, width=args.width,
        depth=args.depth, activation=args.activation, num_data=args.num_data, in_dim=args.in_dim,
        noise_std=args.noise_std, sampler_noise_std=args.sampler_noise_std, num_bins=args.num_bins,
        level=args.level, seed=args.seed, batch_size=args.batch_size, dtype=args.dtype,
        noise_prior=args.noise_prior, sampler_noise_prior=args.sampler_noise_prior)
    print(result.table())
    if args.plot:
        sbc.plot_ranks(result, args.plot)
        print(f"rank histograms written to {args.plot}")
    if args.json:
        from reprior._util.files import atomic_write_text

        atomic_write_text(args.json, json.dumps(result.to_dict(), indent=1))
        print(f"result written to {args.json}")
    return 0 if result.passed else 1


def build_parser() -> argparse.ArgumentParser:
    """The ``reprior`` parser, with its subcommands; its ``parse_args`` reads argv as :func:`main` does
    (``--shard -1/2`` too), and :func:`sweep_options` turns parsed ``sweep`` arguments into options."""
    parser = _Parser(prog=PROG, description="Fast exact posterior sampling of wide Bayesian neural networks "
                                            "by repriorisation: experiment runner and reports.")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_sweep(subparsers)
    _add_report(subparsers)
    _add_reference(subparsers)
    _add_datasets(subparsers)
    _add_sbc(subparsers)
    _add_status(subparsers)
    return parser


def _add_status(subparsers) -> None:
    from reprior.experiments.runner import status

    p = subparsers.add_parser("status", help="cells of a sweep: done, running, failed, pending",
                              description="Show which cells under DIR are done, running, failed or pending, "
                                          "with their job ids and the last log line of failed cells.")
    status.add_arguments(p)
    p.set_defaults(func=_cmd_status)


def _cmd_status(args, argv) -> int:
    from reprior.experiments.runner import status

    return status.command(args)


# ---------------------------------------------------------------------------
# float64
# ---------------------------------------------------------------------------


def _set_dtype(dtype: str | None) -> str:
    """Resolve ``dtype`` and switch JAX's x64 mode to match (the package's one global switch)."""
    import jax

    dtype = dtype or default_dtype()
    jax.config.update("jax_enable_x64", dtype == "float64")
    return dtype


# ---------------------------------------------------------------------------
# Subcommands
# ---------------------------------------------------------------------------


def sweep_options(args) -> dict:
    """The sweep options of parsed ``reprior sweep`` (or ``reprior reference``) arguments, validated.

    ``args`` is what :func:`build_parser` parses, e.g.
    ``build_parser().parse_args(["sweep", "--config", "experiments/quick.toml", "--widths", "8"])``.
    The config file ``args.config`` (if any) is read and the flags override it (a plain
    ``--sampler-option KEY=VALUE`` its sampler-scoped settings too; ``--sampler`` drops the settings
    scoped to samplers left out), then :func:`reprior.experiments.runner.grid.validate` checks the
    whole; a bad value raises :class:`reprior.experiments.runner.grid.ConfigError` in one line.  The
    result is what :func:`reprior.experiments.runner.sweep.plan` and
    :func:`reprior.experiments.runner.sweep.run_sweep` take.  Sets ``args.config_is_empty`` (a config
    file with no grid option in it).
    """
    config = grid.load_config(args.config) if args.config else {}
    args.config_is_empty = bool(args.config) and not set(config) - {"out"}  # no grid option in it
    flags = {}
    for _, dest, _ in _SWEEP_FLAGS:
        flags[dest] = getattr(args, dest)
    if isinstance(config.get("sampler_options"), dict):
        plain_flags = {key for key, _ in args.sampler_options or () if ":" not in key}
        config = {**config, "sampler_options": _file_sampler_options(config["sampler_options"], flags["samplers"],
                                                                     plain_flags)}
    for dest in ("dataset_options", "sampler_options"):
        pairs = getattr(args, dest)
        if pairs is not None:
            flags[dest] = {**config.get(dest, {}), **dict(pairs)} if isinstance(config.get(dest), dict) \
                else dict(pairs)
    return grid.validate(grid.merge(config, flags))


def _file_sampler_options(table: dict, samplers, plain_flags: set) -> dict:
    """The config file's ``sampler_options`` as the flags leave it (flags override the file).

    Settings scoped to a registered sampler that ``--sampler`` (``samplers``, None when not given)
    left out of the sweep are dropped (``[sampler_options.nuts]`` once ``--sampler split_hmc``
    narrows it), and so are scoped settings of a key given as a plain ``--sampler-option KEY=VALUE``
    (``plain_flags``), which would otherwise beat the flag.  The rest is kept, as ``SAMPLER:KEY``
    entries (:func:`reprior.experiments.runner.grid.split_sampler_options`), and checked as usual.
    """
    from reprior.inference.kernels import kernel_names

    plain, scoped = grid.split_sampler_options(table, set(kernel_names()))
    left_out = set(kernel_names()) - set(samplers) if samplers is not None else set()
    kept = {f"{sampler}:{name}": value for sampler, settings in scoped.items() if sampler not in left_out
            for name, value in settings.items() if name not in plain_flags}
    return {**plain, **kept}


def _refuse_default_grid(args) -> None:
    """A bare ``reprior sweep`` would start the default grid, hours of sampling: ask for ``--yes``."""
    empty = getattr(args, "config_is_empty", False)
    if (args.config and not empty) or args.widths is not None or args.yes or args.dry_run:
        return
    from reprior.experiments.runner.grid import DEFAULTS

    cells = len(DEFAULTS["widths"]) * len(DEFAULTS["parameterisations"])
    received = f"a config file with no grid option, {args.config!r}" if empty else "neither"
    raise _UserError(f"--config/--widths: expected a grid (a config file, e.g. --config experiments/quick.toml, "
                     f"or --widths), received {received}: the default grid ({cells} cells up to width "
                     f"{max(DEFAULTS['widths'])}, {DEFAULTS['num_chains']} x {DEFAULTS['num_warmup']} + "
                     f"{DEFAULTS['num_samples']} NUTS iterations each) takes hours on a laptop; pass --yes to run "
                     "it, or --dry-run to see it")


def _cmd_sweep(args, argv) -> int:
    from reprior._util import interrupts

    with interrupts.deferred():  # Ctrl-C/SIGTERM from here on stop at safe points only
        return _sweep(args, argv)


def _sweep(args, argv) -> int:
    from reprior._util import interrupts
    from reprior.experiments import preflight
    from reprior.experiments.runner import ownership, sweep

    options = sweep_options(args)
    _refuse_default_grid(args)
    dtype = _set_dtype(options["dtype"])
    if args.dry_run:
        return _dry_run(options, dtype, args.shard, args.force)
    all_cells, cells = sweep.plan(options, dtype=dtype, shard=args.shard)
    datasets = preflight.check_sweep(options, cells, force=args.force)  # all checked before anything is written
    interrupts.checkpoint()
    if args.executor != "inline":
        from reprior.experiments.runner import executors

        executors.check_available(executors.settings_from_args(args))  # before the folder is made
    ownership.claim(options["out"], "out (--out)", force=args.force)  # the marker, first
    if args.executor != "inline":  # a process per cell, or a SLURM job array (reprior.experiments.runner.executors)
        return executors.submit_sweep(options, cells, dtype=dtype, settings=executors.settings_from_args(args),
                                      command=" ".join([PROG, shlex.join(argv)]), strict=args.strict).exit_code
    result = sweep.run_sweep(options, dtype=dtype, shard=args.shard, quiet=args.quiet,
                             command=" ".join([PROG, shlex.join(argv)]), datasets=datasets,
                             checkpoint_every=args.checkpoint_every, strict=args.strict)
    return result.exit_code


def _dry_run(options, dtype, shard, force=False) -> int:
    """List the cells, check them and load their data (so a bad path or option shows now); sample nothing."""
    from reprior.experiments import preflight
    from reprior.experiments.runner.grid import describe_grad_evals, iterations
    from reprior.experiments.runner.store import CellStore
    from reprior.experiments.runner.sweep import plan

    all_cells, cells = plan(options, dtype=dtype, shard=shard)
    datasets = preflight.check_sweep(options, cells, force=force)
    store = CellStore(options["out"])
    where = f" (shard {shard[0]}/{shard[1]})" if shard else ""
    print(f"{len(all_cells)} cells in the grid, {len(cells)} selected{where} "
          f"({sum(iterations(c.settings) for c in cells):,} iterations, "
          f"{describe_grad_evals(c.settings for c in cells)}); output in {store.root}")
    for data in datasets.values():
        print(f"data {data.name}: x_train {data.x_train.shape}, y_train {data.y_train.shape}, "
              f"x_test {data.x_test.shape}, y_test {data.y_test.shape}")
    for cell in cells:
        state = store.state(cell.key, cell.settings).state
        state = state if state in ("finished", "broken", "running") else "todo"
        data = datasets.get(cell.data_settings())
        sizes = f"n_train={data.n_train} n_test={data.n_test}" if data is not None else \
            f"n_train={cell.settings['n_train']}"
        print(f"{cell.key}  {state:8s}  {cell.label()}  {cell.settings['dataset']} {sizes}")
    return 0


def _cmd_report(args, argv) -> int:
    from reprior.experiments.runner.store import CellStore
    from reprior.experiments.runner.sweep import write_sweep_report

    directory = args.dir
    if not os.path.isdir(directory):
        raise _UserError(f"DIR: expected a sweep's output directory, received {directory!r}, which "
                         + ("is not a directory" if os.path.exists(directory) else "does not exist"))
    finished, broken = CellStore(directory).scan()
    if not finished:
        extra = f" ({len(broken)} broken: rerun the sweep to redo them)" if broken else ""
        raise _UserError(f"DIR: expected finished cells under {os.path.join(directory, 'cells')!r}, "
                         f"received none{extra}")
    files = write_sweep_report(directory)
    print(f"report: {files['report_md']}")
    print(f"        {files['report_html']}")
    print(f"        {files['summary_csv']}")
    return 0


def _cmd_datasets(args, argv) -> int:
    from rich.console import Console
    from rich.table import Table

    from reprior.experiments.data import list_datasets

    table = Table(title="reprior data sets (no downloads: cifar10, npz and csv read --data-path)")
    for column in ("name", "source", "inputs", "default n_train / n_test", "options", "description"):
        table.add_column(column, overflow="fold")
    for entry in list_datasets():
        source = "--data-path" if entry["needs_path"] else "built in"
        shape = entry["image_shape"]
        inputs = "x".join(map(str, shape)) + " images" if shape else "tabular"
        sizes = " / ".join("all" if n is None else str(n) for n in (entry["default_n_train"], entry["default_n_test"]))
        options = ", ".join(f"{k}={v!r}" for k, v in entry["options"].items()) or "-"
        table.add_row(entry["name"], source, inputs, sizes, options, entry["description"])
    console = Console(highlight=False)
    if not console.is_terminal:  # a file or a pipe: do not wrap at 80 columns
        console = Console(highlight=False, width=160)
    console.print(table)
    return 0


def _cmd_sbc(args, argv) -> int:
    from reprior.experiments import preflight

    preflight.check_sbc(args)
    _set_dtype(getattr(args, "dtype", None))
    return sbc_command(args)


# ---------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------


def _error(message: str) -> int:
    message = " ".join(str(message).split())  # one line
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return 2


def _join_negative_values(argv: list[str]) -> list[str]:
    """``--shard -1/2`` as ``--shard=-1/2``: argparse would read ``-1/2`` as a flag and say only
    that ``--shard`` expects one argument."""
    out, i = [], 0
    while i < len(argv):
        if argv[i] in ("--shard",) and i + 1 < len(argv) and argv[i + 1].startswith("-") \
                and argv[i + 1][1:2].isdigit():
            out.append(f"{argv[i]}={argv[i + 1]}")
            i += 2
            continue
        out.append(argv[i])
        i += 1
    return out


def main(argv=None) -> int:
    """Run the ``reprior`` command line on ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    from reprior._util import interrupts

    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    x64 = None
    try:
        with interrupts.terminate_as_interrupt():
            with interrupts.deferred():  # XLA's native libraries load here: never interrupted halfway
                import jax

                from reprior.inference import sampling  # noqa: F401  (NumPyro, ArviZ and the kernels)

            x64 = jax.config.jax_enable_x64
            args = build_parser().parse_args(argv)
            return args.func(args, argv)
    except SystemExit as stop:  # argparse: --help, --version, bad flags
        code = stop.code
        return code if isinstance(code, int) else (0 if code is None else _error(code))
    except KeyboardInterrupt as err:
        print(f"{PROG}: interrupted ({'SIGTERM' if interrupts.exit_code(err) == 143 else 'Ctrl-C'})",
              file=sys.stderr)
        return interrupts.exit_code(err)
    except BrokenPipeError:  # e.g. `reprior sweep --dry-run | head`: stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except OSError as err:  # a fault on a path found late: one line naming the file, no temporary names
        if os.environ.get("REPRIOR_TRACEBACK"):
            raise
        from reprior._util.files import describe_os_error

        if err.errno is None and err.filename is None:  # raised by reprior with its own one-line message
            return _error(err)
        return _error(describe_os_error(err, "file", expected="a usable path"))
    except (_UserError, grid.ConfigError, ValueError, TypeError) as err:
        if os.environ.get("REPRIOR_TRACEBACK"):
            raise
        return _error(err)
    finally:
        if x64 is not None:
            import jax

            jax.config.update("jax_enable_x64", x64)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
