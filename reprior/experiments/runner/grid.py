"""The sweep grid: options, their validation, grid expansion, cell keys and shards.

A sweep is described by a flat dict of *options* (:data:`OPTIONS`), merged
from three layers, each overriding the one before::

    built-in defaults  <-  the TOML file (--config)  <-  command-line flags

Grid axes (:data:`AXES`) take one value or a list; the grid is their Cartesian
product, expanded in the fixed order of :data:`AXES` (the first varies
slowest).  Every *cell* of the grid is one :func:`reprior.sample` run,
described by a flat, JSON-serialisable settings dict, and identified by

.. math:: \\mathrm{key} = \\mathrm{sha256}(\\mathrm{canonical\\ JSON}(\\mathrm{settings}))[:16]

(sorted keys, no whitespace, ASCII), so the same settings give the same key in
any process and on any machine, and any change of a setting gives another key.

``--shard I/K`` selects the cells whose index in the *sorted list of keys* is
``I`` modulo ``K``: the ``K`` shards are disjoint, their union is the grid, and
the split does not depend on the order of the options.

This module does no computation; it knows nothing of JAX or ArviZ.
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reprior._util.choices import CHAIN_METHODS, DTYPES

__all__ = [
    "AXES", "Cell", "ConfigError", "DEFAULTS", "KEY_LENGTH", "OPTIONS", "PARAMETERISATIONS", "cell_key",
    "describe_grad_evals", "estimate_grad_evals", "expand", "grad_evals_range", "grads_per_iteration", "iterations",
    "load_config", "merge", "parse_shard", "select_shard", "split_sampler_options", "validate",
]

KEY_LENGTH = 16
"""Hex characters of the sha256 digest kept as the cell key."""

PARAMETERISATIONS = {
    # CLI name: (reprior.sample's parameterisation, readout)
    "standard": ("standard", "sampled"),
    "reprior": ("reprior", "exact"),
    "reprior-sampled": ("reprior", "sampled"),
}
"""Sweep parameterisations and what they mean for :func:`reprior.sample`.

``standard`` samples theta, readout included (``readout`` is ignored by
:func:`reprior.sample` and reported as ``"sampled"``); ``reprior`` samples the
hidden weights in repriorised coordinates and draws the readout exactly;
``reprior-sampled`` samples the hidden weights and ``phi_out`` jointly, as in
Hron et al. (2022).
"""

KEEP = ("auto", "all", "readout", "none")

#: Grid axes, in expansion order (first = slowest).  Option name -> cell setting name.
AXES = {
    "datasets": "dataset", "n_train": "n_train", "archs": "arch", "depths": "depth",
    "activations": "activation", "residual_scalings": "residual_scaling", "noise_std": "noise_std",
    "samplers": "sampler", "seeds": "seed", "widths": "width", "parameterisations": "parameterisation",
}


def __getattr__(name: str):
    """``ARCHS`` (the registered architecture names) and ``DEFAULT_DEPTH`` (name -> default depth),
    derived from :mod:`reprior.core.architectures.registry` when read, so that importing the grid stays
    free of JAX and an architecture registered later is included."""
    if name == "ARCHS":
        return _architectures()[0]
    if name == "DEFAULT_DEPTH":
        names, get = _architectures()
        return {arch: get(arch).default_depth for arch in names}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _architectures():
    """``(registered names, get_architecture)``, imported on first use (the architectures import JAX)."""
    from reprior.core.architectures.registry import architecture_names, get_architecture

    return architecture_names(), get_architecture


def architecture_spec(name: str):
    """The :class:`~reprior.core.architectures.registry.ArchitectureSpec` registered as ``name``."""
    return _architectures()[1](name)


class ConfigError(ValueError):
    """A bad option value, config file or flag; its message is one readable line."""


@dataclass(frozen=True)
class _Option:
    default: Any
    help: str
    axis: bool = False  # a grid axis: one value or a list
    aliases: tuple[str, ...] = ()  # other names accepted in a config file


#: Every sweep option: name (as in the TOML file; the flag is ``--name-with-dashes``) -> spec.
OPTIONS: dict[str, _Option] = {
    "archs": _Option(["mlp"], "architectures (reprior.core.architectures.architecture_names()): mlp, resnet, ..., "
                              "or MODULE:CALLABLE",
                     axis=True, aliases=("arch",)),
    "depths": _Option(None, "MLP: hidden layers (default 1); ResNet: 6k+2 (default 8); else the architecture's",
                      axis=True,
                      aliases=("depth",)),
    "widths": _Option([64, 256, 1024], "hidden widths (ResNet: channels of the first group)", axis=True,
                      aliases=("width",)),
    "activations": _Option(["relu"], "activation: relu, erf, gelu, tanh", axis=True, aliases=("activation",)),
    "residual_scalings": _Option(["uniform"], "ResNet residual scaling: uniform, progressive", axis=True,
                                 aliases=("residual_scaling",)),
    "datasets": _Option(["digits"], "data set names (see `reprior datasets`)", axis=True, aliases=("dataset",)),
    "data_path": _Option(None, "file or directory for cifar10, npz, csv"),
    "dataset_options": _Option({}, "loader options, e.g. {in_dim = 8} for synthetic"),
    "n_train": _Option([None], "training points: a number, \"all\" (every point the test set leaves), or "
                               "the data set's own default when not given (`reprior datasets`)", axis=True),
    "n_test": _Option(None, "test points: a number (0: none), \"all\", or the data set's own default when not given"),
    "data_seed": _Option(0, "seed of the data subset (and of synthetic data)"),
    "noise_std": _Option([0.1], "observation noise standard deviation, or a prior on it to infer it "
                                "(e.g. \"HalfNormal(0.5)\")", axis=True),
    "parameterisations": _Option(["standard", "reprior"], "standard, reprior, reprior-sampled", axis=True,
                                 aliases=("parameterisation",)),
    "samplers": _Option(["nuts"], "registered sampler names (reprior.inference.kernels.kernel_names())", axis=True,
                        aliases=("sampler",)),
    "target_accept": _Option(None, "target acceptance probability of the step-size adaptation"),
    "sampler_options": _Option({}, "further sampler settings, e.g. {max_tree_depth = 8}: each applies to the "
                                   "sweep's samplers that take it; a table named after a sampler, "
                                   "[sampler_options.nuts], holds settings of that sampler only"),
    "num_warmup": _Option(300, "warm-up iterations per chain"),
    "num_samples": _Option(300, "recorded draws per chain"),
    "num_chains": _Option(2, "chains per cell"),
    "thinning": _Option(1, "iterations per recorded draw"),
    "seeds": _Option([0], "sampler seeds", axis=True, aliases=("seed",)),
    "chain_method": _Option("sequential", "sequential, vectorized, parallel"),
    "keep": _Option("auto", "parameters stored per draw: auto, all, readout, none"),
    "num_projections": _Option(10, "random projections of theta and phi"),
    "dtype": _Option(None, "float64 or float32 (default: float64 on CPU, float32 on accelerators)"),
    "reference": _Option("off", "reference posteriors for cost to accuracy: auto (built on demand under "
                                 "OUT/references), off, or PATH (a reference .npz, a references folder or a "
                                 "sweep's output directory)"),
    "reference_samplers": _Option(["nuts", "pcnl"], "the two (or more) kernels of the reference chains"),
    "reference_num_chains": _Option(4, "chains per reference kernel"),
    "reference_num_warmup": _Option(500, "warm-up iterations per reference chain"),
    "reference_num_samples": _Option(2000, "recorded draws per reference chain"),
    "reference_max_num_samples": _Option(8000, "an uncertified reference's chains are continued to more draws (at least twice, enough for ESS 400 at its rate), up to this"),
    "reference_thinning": _Option(1, "iterations per recorded reference draw: a number or {kernel = number}"),
    "reference_sampler_options": _Option({}, "per reference kernel settings, e.g. {nuts = {max_tree_depth = 6}}"),
    "b2_threshold": _Option(0.01, "accuracy threshold of the cost-to-accuracy verdict, in (0, 1)"),
    "out": _Option(None, "output directory (default: runs/<config name> or runs/sweep)"),
    "report": _Option(True, "write the report at the end"),
    "name": _Option(None, "a name for the sweep (informational)"),
    "description": _Option(None, "a description of the sweep (informational)"),
}

DEFAULTS: dict[str, Any] = {name: spec.default for name, spec in OPTIONS.items()}
_ALIASES = {alias: name for name, spec in OPTIONS.items() for alias in spec.aliases}


# ---------------------------------------------------------------------------
# Config files and merging
# ---------------------------------------------------------------------------


def load_config(path: str | Path) -> dict[str, Any]:
    """Read a TOML sweep file into a dict of options (names checked, values not yet).

    Keys are option names (:data:`OPTIONS`) or their singular aliases
    (``width = 64`` for ``widths = [64]``).  Tables ``[dataset_options]`` and
    ``[sampler_options]`` hold loader and sampler settings.  Raises
    :class:`ConfigError` for a missing file, bad TOML or an unknown key.
    """
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {str(path)!r} does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"config (--config): expected a TOML file, received {str(path)!r}, a directory") from None
    except OSError as err:
        raise ConfigError(f"cannot read config file {str(path)!r}: {err.strerror or err}") from None
    except UnicodeDecodeError as err:
        raise ConfigError(f"config (--config): expected a UTF-8 TOML file, received {str(path)!r}, with a byte "
                          f"that is not UTF-8 at offset {err.start}") from None
    text = text.removeprefix("\ufeff")  # a byte-order mark written by some editors
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"config file {str(path)!r} is not valid TOML: {err}") from None
    config = {}
    for key, value in raw.items():
        name = _ALIASES.get(key, key)
        if name not in OPTIONS:
            raise ConfigError(f"config file {str(path)!r}: unknown key {key!r}; known keys: "
                              + ", ".join(sorted(OPTIONS)))
        if name in config:
            raise ConfigError(f"config file {str(path)!r}: {key!r} given twice (as {name!r} and an alias)")
        config[name] = value
    if config.get("out") is None:
        config["out"] = str(Path("runs") / path.stem)
    return config


def merge(*layers: dict[str, Any]) -> dict[str, Any]:
    """Defaults, then each layer in turn; ``None`` values in a layer do not override."""
    merged = dict(DEFAULTS)
    for layer in layers:
        for key, value in layer.items():
            name = _ALIASES.get(key, key)
            if name not in OPTIONS:
                raise ConfigError(f"unknown option {key!r}")
            if value is not None:
                merged[name] = value
    if merged["out"] is None:
        merged["out"] = str(Path("runs") / "sweep")
    return merged


# ---------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------


def _bad(name: str, expected: str, received) -> ConfigError:
    """The error for option ``name``, naming its flag where it has one."""
    if name in ("name", "description"):
        return ConfigError(f"{name}: expected {expected}, received {received!r}")
    flag = "--" + name.replace("_", "-").removesuffix("s" if name.endswith("_options") else "")
    return ConfigError(f"{name} ({flag}): expected {expected}, received {received!r}")


def _int(name, value, minimum):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        expected = {0: "a non-negative integer", 1: "a positive integer"}.get(minimum, f"an integer >= {minimum}")
        raise _bad(name, expected, value)
    return int(value)


MAX_SEED = 2**32 - 1
"""The largest seed: JAX and NumPy take seeds as unsigned 32-bit integers here."""


def _seed(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not 0 <= value <= MAX_SEED:
        raise _bad(name, f"an integer in [0, {MAX_SEED}]", value)
    return int(value)


def _float(name, value, *, positive=True):
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or (value <= 0 if positive else value < 0):
        raise _bad(name, "a positive number", value)
    return float(value)


def _noise(name, value):
    """A fixed noise (a positive number) or an inferred one: a prior's text, as
    :func:`reprior.core.bnn.parse_noise_prior` reads it, kept in the canonical form of
    :func:`reprior.core.bnn.noise_prior_text` (``"HalfNormal(scale=0.5)"``: one cell key per prior)."""
    if not isinstance(value, str):
        return _float(name, value)
    if "(" not in value:
        raise _bad(name, "a positive number, or a prior's text such as \"HalfNormal(0.5)\"", value)
    from reprior.core.bnn import noise_prior_text, parse_noise_prior  # NumPyro, only where a prior is given

    try:
        return noise_prior_text(parse_noise_prior(value, name))
    except ValueError as error:
        raise ConfigError(str(error)) from None


def _choice(name, value, choices):
    if not isinstance(value, str) or value not in choices:
        raise _bad(name, "one of " + ", ".join(choices), value)
    return value


def _arch(value, names):
    """A registered name, or a ``MODULE:CALLABLE`` reference that imports (:mod:`reprior.core.architectures.loading`),
    stored as the cell's ``arch`` (a file's path made absolute)."""
    from reprior.core.architectures import loading

    if not loading.is_reference(value):
        return _choice("arch", value, names)
    try:
        return architecture_spec(value).name
    except ValueError as err:
        raise _bad("arch", getattr(err, "expected", "an importable MODULE:CALLABLE"),
                   getattr(err, "received", value)) from None


def _axis_values(name, value) -> list:
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    if not values:
        raise _bad(name, "at least one value", value)
    if len({json.dumps(v, sort_keys=True) for v in values}) != len(values):
        raise _bad(name, "distinct values", value)
    return values


def _table(name, value) -> dict:
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise _bad(name, "a table of KEY = VALUE settings", value)
    return dict(value)


def _check_depths(spec, depths) -> None:
    """Each depth as the architecture's own ``depth`` field check accepts it (see
    :func:`reprior.core.architectures.base.hyperparameter`); a ConfigError naming ``--depth`` otherwise."""
    import dataclasses

    fields = {f.name: f for f in dataclasses.fields(spec.cls)} if dataclasses.is_dataclass(spec.cls) else {}
    check = fields["depth"].metadata.get("check") if "depth" in fields else None
    for depth in depths if check is not None else ():
        try:
            check("depth", depth)
        except ValueError as err:
            raise _bad("depth", f"{getattr(err, 'expected', err)} for a {spec.cls.__name__}", depth) from None


def validate(options: dict[str, Any], *, samplers=None, datasets=None, activations=None) -> dict[str, Any]:
    """Check and normalise merged options; raise :class:`ConfigError` naming the option.

    Args:
        options: the output of :func:`merge`.
        samplers, datasets, activations: the names allowed (default: the
            registered samplers, :func:`reprior.experiments.data.list_datasets`, and the
            activations of :mod:`reprior.core.architectures`).

    Returns:
        A new dict: axes as lists, numbers as ``int``/``float``, ``depths``
        filled in per architecture (as ``{arch: [depths]}``).
    """
    samplers, sampler_option_names, datasets, activations = _allowed_names(samplers, datasets, activations)
    o = dict(options)
    out = {name: o[name] for name in ("name", "description")}
    out.update(_network_axes(o, activations))
    out.update(_data_options(o, datasets))
    out["parameterisations"] = [_choice("parameterisations", p, tuple(PARAMETERISATIONS))
                                for p in _axis_values("parameterisations", o["parameterisations"])]
    out["samplers"] = [_choice("sampler", s, tuple(samplers)) for s in _axis_values("sampler", o["samplers"])]
    target = _target_accept(o["target_accept"])
    out["target_accept"] = target
    out["sampler_options"] = _table("sampler_options", o["sampler_options"])
    out["cell_sampler_options"] = _cell_sampler_options(out["sampler_options"], target, out["samplers"],
                                                        tuple(samplers), sampler_option_names)
    out.update(_chain_options(o))
    out.update(_reference_options(o, samplers, sampler_option_names))
    if not isinstance(o["out"], str) or not o["out"]:
        raise _bad("out", "a directory path", o["out"])
    out["out"] = o["out"]
    if not isinstance(o["report"], bool):
        raise _bad("report", "true or false", o["report"])
    out["report"] = o["report"]
    for name in ("name", "description"):
        if out[name] is not None and not isinstance(out[name], str):
            raise _bad(name, "a string", out[name])
    return out


def _allowed_names(samplers, datasets, activations):
    """``(samplers, sampler_option_names, datasets, activations)``: the names :func:`validate` allows, the
    registered ones where none are given; ``sampler_option_names`` (each registered sampler's options) is
    None when ``samplers`` are given."""
    sampler_option_names = None
    if samplers is None:
        from reprior.inference.kernels import get_kernel, kernel_names

        samplers = kernel_names()
        sampler_option_names = {name: get_kernel(name).options for name in samplers}
    if datasets is None:
        from reprior.experiments.data import list_datasets

        datasets = [d["name"] for d in list_datasets()]
    if activations is None:
        from reprior.core.architectures.layers import ACTIVATIONS

        activations = tuple(ACTIVATIONS)
    return samplers, sampler_option_names, datasets, activations


def _network_axes(o: dict[str, Any], activations) -> dict[str, Any]:
    """The network's axes: ``archs``, ``widths``, ``activations``, ``residual_scalings`` and ``depths``
    (``{arch: [depths]}``; each architecture's default depth where none are given)."""
    out = {}
    arch_names, get_arch = _architectures()
    out["archs"] = [_arch(a, arch_names) for a in _axis_values("arch", o["archs"])]
    out["widths"] = [_int("widths", w, 1) for w in _axis_values("widths", o["widths"])]
    out["activations"] = [_choice("activation", a, tuple(activations))
                          for a in _axis_values("activation", o["activations"])]
    out["residual_scalings"] = [_choice("residual_scaling", r, ("uniform", "progressive"))
                                for r in _axis_values("residual_scaling", o["residual_scalings"])]
    if o["depths"] is None:
        out["depths"] = {arch: [get_arch(arch).default_depth] for arch in out["archs"]}
    else:
        depths = [_int("depth", d, 1) for d in _axis_values("depth", o["depths"])]
        for arch in out["archs"]:
            _check_depths(get_arch(arch), depths)
        out["depths"] = {arch: depths for arch in out["archs"]}
    return out


def _data_options(o: dict[str, Any], datasets) -> dict[str, Any]:
    """The data's options: ``datasets``, ``data_path``, ``dataset_options``, ``n_train``, ``n_test``,
    ``data_seed`` and ``noise_std``."""
    out = {"datasets": [_choice("dataset", d, tuple(datasets)) for d in _axis_values("dataset", o["datasets"])]}
    path = o["data_path"]
    if path is not None and (not isinstance(path, str) or not path):
        raise _bad("data_path", "a file or directory path", path)
    out["data_path"] = path
    out["dataset_options"] = _table("dataset_options", o["dataset_options"])
    out["n_train"] = [_size("n_train", n, 1) for n in _axis_values("n_train", o["n_train"])]
    out["n_test"] = _size("n_test", o["n_test"], 0)
    out["data_seed"] = _seed("data_seed", o["data_seed"])
    out["noise_std"] = [_noise("noise_std", s) for s in _axis_values("noise_std", o["noise_std"])]
    return out


def _target_accept(target):
    """``target_accept``: None (each sampler's default) or a number in (0, 1), as a float."""
    if target is not None:
        ok = isinstance(target, numbers.Real) and not isinstance(target, bool) and 0 < target < 1
        if not ok:
            raise _bad("target_accept", "a number in (0, 1)", target)
        target = float(target)
    return target


def _chain_options(o: dict[str, Any]) -> dict[str, Any]:
    """The chains' options: their lengths and number, ``thinning``, ``seeds``, ``chain_method``, what is
    stored (``keep``, ``num_projections``) and ``dtype``."""
    out = {"num_warmup": _int("num_warmup", o["num_warmup"], 0),
           "num_samples": _int("num_samples", o["num_samples"], 1),
           "num_chains": _int("num_chains", o["num_chains"], 1),
           "thinning": _int("thinning", o["thinning"], 1),
           "seeds": [_seed("seeds", s) for s in _axis_values("seeds", o["seeds"])],
           "chain_method": _choice("chain_method", o["chain_method"], CHAIN_METHODS),
           "keep": _choice("keep", o["keep"], KEEP),
           "num_projections": _int("num_projections", o["num_projections"], 0)}
    if out["num_projections"] == 0 and out["keep"] == "none":
        raise _bad("num_projections", "at least 1 with keep = 'none' (else no posterior draw is stored)", 0)
    out["dtype"] = None if o["dtype"] is None else _choice("dtype", o["dtype"], DTYPES)
    return out


def _size(name, value, minimum):
    """A data size: None (the data set's default), ``"all"``, or an integer of at least ``minimum``."""
    if value is None or value == "all":
        return value
    if isinstance(value, str):
        raise _bad(name, f"{'a positive' if minimum == 1 else 'a non-negative'} integer or \"all\"", value)
    return _int(name, value, minimum)


def split_sampler_options(table: dict, registered) -> tuple[dict, dict[str, dict]]:
    """``(plain, scoped)`` of a ``sampler_options`` table: ``scoped[sampler]`` holds the settings
    given for one sampler, as a table named after a registered sampler (``[sampler_options.nuts]``)
    or as a ``"SAMPLER:KEY"`` name (``--sampler-option nuts:max_tree_depth=6``); ``plain`` the rest."""
    plain, scoped = {}, {}
    for key, value in table.items():
        sampler, sep, name = key.partition(":")
        if sep:
            if not sampler or not name:
                raise _bad("sampler_options", "KEY=VALUE or SAMPLER:KEY=VALUE settings", key)
            scoped.setdefault(sampler, {})[name] = value
        elif key in registered and isinstance(value, dict):
            scoped.setdefault(key, {}).update(_table(f"sampler_options.{key}", value))
        else:
            plain[key] = value
    return plain, scoped


def _cell_sampler_options(table: dict, target_accept, samplers: list, registered, option_names) -> dict[str, dict]:
    """``{sampler: its options}`` for each sampler of the sweep.

    A plain setting goes to every sampler of the sweep that takes it (and is refused when none
    does); a scoped one (:func:`split_sampler_options`) to its sampler only, over the plain one, and
    is refused when that sampler is not in the sweep or does not take it.  ``target_accept``
    (``--target-accept``) is the plain setting ``target_accept_prob``.  With ``option_names``
    None (the samplers were given by the caller), every plain setting goes to every sampler.
    """
    plain, scoped = split_sampler_options(table, registered)
    if target_accept is not None:
        plain["target_accept_prob"] = target_accept
    for sampler, settings in scoped.items():
        if sampler not in samplers:
            raise _bad("sampler_options", f"SAMPLER:KEY settings of the sweep's samplers ({', '.join(samplers)})",
                       f"{sampler}:{', '.join(settings)} (sampler {sampler!r} is not in this sweep)")
        unknown = sorted(set(settings) - set(option_names[sampler])) if option_names is not None else []
        if unknown:
            raise _bad("sampler_options", f"settings of sampler {sampler!r} among "
                       f"{', '.join(option_names[sampler])}", ", ".join(f"{sampler}:{k}" for k in unknown))
    if option_names is not None:
        unused = sorted(k for k in plain if not any(k in option_names[s] for s in samplers))
        if unused:
            flag = "--target-accept" if unused == ["target_accept_prob"] and target_accept is not None else None
            known = sorted({k for s in samplers for k in option_names[s]})
            if flag:
                raise _bad("target_accept", f"a sampler that takes target_accept_prob among {', '.join(samplers)}",
                           target_accept)
            which = f"sampler {samplers[0]!r}" if len(samplers) == 1 else \
                f"at least one of the sweep's samplers ({', '.join(samplers)})"
            raise _bad("sampler_options", f"settings of {which} among {', '.join(known)}", ", ".join(unused))
    out = {}
    for sampler in samplers:
        takes = (lambda k: True) if option_names is None else (lambda k, s=sampler: k in option_names[s])
        out[sampler] = {**{k: v for k, v in plain.items() if takes(k)}, **scoped.get(sampler, {})}
    return out


def _reference_path(value) -> str:
    """``reference``: "auto", "off", or an existing reference file or folder."""
    if value in ("auto", "off"):
        return value
    if not isinstance(value, str) or not value:
        raise _bad("reference", "auto, off or a path to references", value)
    if not Path(value).exists():
        raise _bad("reference", "auto, off or an existing reference file or folder", f"{value} (does not exist)")
    return value


def _reference_options(o: dict[str, Any], samplers, sampler_option_names) -> dict[str, Any]:
    """The reference settings (not cell settings: they do not change a cell's key)."""
    out = {"reference": _reference_path(o["reference"])}
    if sampler_option_names is None:  # the cells' samplers were given: the references' are the registered ones
        from reprior.inference.kernels import get_kernel, kernel_names

        samplers = kernel_names()
        sampler_option_names = {name: get_kernel(name).options for name in samplers}
    names = [_choice("reference_samplers", s, tuple(samplers)) for s in _axis_values("reference_samplers",
                                                                                      o["reference_samplers"])]
    if len(names) < 2 or len(set(names)) != len(names):
        raise _bad("reference_samplers", "two or more different kernel names", names)
    out["reference_samplers"] = names
    out["reference_num_chains"] = _int("reference_num_chains", o["reference_num_chains"], 2)
    out["reference_num_warmup"] = _int("reference_num_warmup", o["reference_num_warmup"], 0)
    out["reference_num_samples"] = _int("reference_num_samples", o["reference_num_samples"], 1)
    out["reference_max_num_samples"] = _int("reference_max_num_samples", o["reference_max_num_samples"], 1)
    if out["reference_max_num_samples"] < out["reference_num_samples"]:
        raise _bad("reference_max_num_samples", f"at least reference_num_samples ({out['reference_num_samples']})",
                   out["reference_max_num_samples"])
    thinning = o["reference_thinning"]
    if isinstance(thinning, dict):
        for sampler, value in thinning.items():
            if sampler not in names:
                raise _bad("reference_thinning", f"a number or a table keyed by reference_samplers {names}", sampler)
            _int(f"reference_thinning.{sampler}", value, 1)
        out["reference_thinning"] = {k: int(v) for k, v in thinning.items()}
    else:
        out["reference_thinning"] = _int("reference_thinning", thinning, 1)
    options = _table("reference_sampler_options", o["reference_sampler_options"])
    for sampler, table in options.items():
        if sampler not in names:
            raise _bad("reference_sampler_options", f"tables named after reference_samplers {names}", sampler)
        table = _table(f"reference_sampler_options.{sampler}", table)
        if sampler_option_names is not None:
            unknown = sorted(set(table) - set(sampler_option_names[sampler]))
            if unknown:
                raise _bad(f"reference_sampler_options.{sampler}", f"settings of sampler {sampler!r} among "
                           f"{', '.join(sampler_option_names[sampler])}", ", ".join(unknown))
    out["reference_sampler_options"] = options
    threshold = o["b2_threshold"]
    ok = isinstance(threshold, numbers.Real) and not isinstance(threshold, bool) and 0 < threshold < 1
    if not ok:
        raise _bad("b2_threshold", "a number in (0, 1)", threshold)
    out["b2_threshold"] = float(threshold)
    return out


def reference_budget(options: dict[str, Any]) -> dict[str, Any]:
    """What a sweep's reference chains are (the budget stored beside each reference)."""
    return {"samplers": list(options["reference_samplers"]), "num_chains": options["reference_num_chains"],
            "num_warmup": options["reference_num_warmup"], "num_samples": options["reference_num_samples"],
            "max_num_samples": options["reference_max_num_samples"],
            "thinning": options["reference_thinning"], "sampler_options": options["reference_sampler_options"],
            "threshold": options["b2_threshold"]}


# ---------------------------------------------------------------------------
# Cells
# ---------------------------------------------------------------------------


def cell_key(settings: dict[str, Any]) -> str:
    """The first :data:`KEY_LENGTH` hex characters of the sha256 of the canonical JSON of ``settings``."""
    text = json.dumps(settings, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return hashlib.sha256(text.encode("ascii")).hexdigest()[:KEY_LENGTH]


@dataclass(frozen=True)
class Cell:
    """One grid cell: its ``key``, its ``index`` in grid order and its ``settings``."""

    key: str
    index: int
    settings: dict[str, Any]

    def label(self) -> str:
        s = self.settings
        return (f"{s['arch']} d{s['depth']} w{s['width']} {s['parameterisation']} {s['sampler']} "
                f"seed {s['seed']}")

    def data_settings(self) -> tuple:
        """What the data depends on (cells sharing it share one loaded data set)."""
        s = self.settings
        return (s["dataset"], s["data_path"], json.dumps(s["dataset_options"], sort_keys=True), s["n_train"],
                s["n_test"], s["data_seed"], architecture_spec(s["arch"]).image_inputs)


def _settings(o: dict[str, Any], point: dict[str, Any], dtype: str) -> dict[str, Any]:
    param = point["parameterisation"]
    if "cell_sampler_options" in o:  # validated: the options of this sampler only
        sampler_options = dict(o["cell_sampler_options"].get(point["sampler"], {}))
    else:
        sampler_options = dict(o["sampler_options"])
        if o["target_accept"] is not None:
            sampler_options["target_accept_prob"] = o["target_accept"]
    settings = {
        "arch": point["arch"], "depth": point["depth"], "width": point["width"],
        "activation": point["activation"],
        "dataset": point["dataset"], "data_path": o["data_path"], "dataset_options": o["dataset_options"],
        "n_train": point["n_train"], "n_test": o["n_test"], "data_seed": o["data_seed"],
        "noise_std": point["noise_std"],
        "parameterisation": param, "readout": PARAMETERISATIONS[param][1],
        "sampler": point["sampler"], "sampler_options": sampler_options,
        "num_warmup": o["num_warmup"], "num_samples": o["num_samples"], "num_chains": o["num_chains"],
        "thinning": o["thinning"], "seed": point["seed"], "chain_method": o["chain_method"],
        "keep": o["keep"], "num_projections": o["num_projections"], "dtype": dtype,
    }
    for name in architecture_spec(point["arch"]).settings:  # e.g. a ResNet's residual_scaling
        settings[name] = point[name]
    return settings


def _points(options: dict[str, Any]):
    """Every combination of axis values, in grid order (depths depend on the architecture)."""
    axes = list(AXES.items())

    def rec(i, point):
        if i == len(axes):
            yield dict(point)
            return
        option, name = axes[i]
        values = options["depths"][point["arch"]] if name == "depth" else options[option]
        for value in values:
            point[name] = value
            yield from rec(i + 1, point)

    yield from rec(0, {})


def expand(options: dict[str, Any], *, dtype: str) -> list[Cell]:
    """All cells of validated ``options``, in grid order (:data:`AXES`, first axis slowest).

    ``dtype`` is the resolved floating-point type (it is part of every cell's
    settings).  ``residual_scaling`` is a setting of ResNet cells only, so it
    does not multiply MLP cells: duplicate cells are dropped.
    """
    cells, seen = [], set()
    for point in _points(options):
        settings = _settings(options, point, dtype)
        key = cell_key(settings)
        if key not in seen:
            seen.add(key)
            cells.append(Cell(key, len(cells), settings))
    return cells


#: NUTS's tree depth of a typical adapted run on these posteriors (31 leapfrog steps), kept for
#: callers of the earlier point estimate; :func:`grad_evals_range` gives the range instead.
NUTS_GRADS_PER_ITERATION = 31
#: Samplers that use no gradient: counted as log-density evaluations per iteration.
_GRADIENT_FREE = ("pcn", "elliptical_slice")
#: ``(default, option)`` of the samplers whose cost per iteration is a number of steps: the default
#: number of integration steps of the sampler's builder (:mod:`reprior.inference.samplers`) and the option
#: that sets it.
_STEPS = {"hmc": (16, "num_steps"), "underdamped_hmc": (1, "num_steps"), "split_hmc": (6, "num_steps")}
#: The integrator family of each kernel in ``_STEPS`` (:mod:`reprior.inference.samplers.integrators`);
#: ``hmc`` is NumPyro's leapfrog.
_FAMILIES = {"hmc": "euclidean", "underdamped_hmc": "euclidean", "split_hmc": "gaussian_split"}


def _grads_per_step(family: str, integrator) -> int:
    """Gradients per integrator step from the shared registry; the family's default where ``integrator``
    is unset or not a registered name (options are checked when the cell runs)."""
    from reprior.inference.samplers import integrators

    if not (isinstance(integrator, str) and integrator in integrators.names(family)):
        integrator = None
    return integrators.grads_per_step(family, integrator)


def iterations(settings: dict[str, Any]) -> int:
    """Sampler iterations of a cell: ``num_chains * (num_warmup + num_samples * thinning)``."""
    s = settings
    return s["num_chains"] * (s["num_warmup"] + s["num_samples"] * s["thinning"])


def grads_per_iteration(settings: dict[str, Any]) -> tuple[int, int | None]:
    """``(fewest, most)`` gradient (or, for gradient-free kernels, log-density) evaluations of one
    iteration of the cell's sampler, from its settings; ``most`` None where there is no bound.

    NUTS: 1 to :math:`2^{\\mathrm{max\\_tree\\_depth}} - 1` (depth 10 by default: up to 1023);
    ``hmc``, ``underdamped_hmc``, ``split_hmc``: ``num_steps`` (16, 1, 6 by default) times the
    integrator's gradients per step (2 for split HMC's ``mclachlan``); ``mclmc``: 2
    (McLachlan's integrator; 1 with velocity Verlet); ``adjusted_mclmc``: 2 per integration step, a
    tuned random number of steps (at least 2, no bound); ``elliptical_slice``: 1 to
    ``1 + max_shrinks`` densities; ``pcn``, ``pcnl`` and other kernels: 1 (``num_steps`` where set).
    """
    options = settings.get("sampler_options") or {}
    sampler = settings["sampler"]

    def option(name, default):
        value = options.get(name, default)
        return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else default

    if sampler == "nuts":
        return 1, 2 ** option("max_tree_depth", 10) - 1
    if sampler in _STEPS:
        default, name = _STEPS[sampler]
        steps = options.get(name)
        if sampler == "hmc" and steps is None and options.get("trajectory_length") is not None:
            return 1, None  # trajectory_length / tuned step size: not known in advance
        steps = option(name, default) * _grads_per_step(_FAMILIES[sampler], options.get("integrator"))
        return steps, steps
    if sampler == "mclmc":
        per = _grads_per_step("isokinetic", options.get("integrator"))
        return per, per
    if sampler == "adjusted_mclmc":
        return _grads_per_step("isokinetic", options.get("integrator")), None
    if sampler == "elliptical_slice":
        return 1, 1 + option("max_shrinks", 100)
    steps = option("num_steps", 1)
    return max(steps, 1), max(steps, 1)


def grad_evals_range(settings: dict[str, Any]) -> tuple[int, int | None]:
    """``(fewest, most)`` gradient evaluations of a cell (:func:`iterations` times
    :func:`grads_per_iteration`); ``most`` None where the sampler has no bound."""
    low, high = grads_per_iteration(settings)
    n = iterations(settings)
    return n * low, None if high is None else n * high


def describe_grad_evals(cells_settings) -> str:
    """The plan's cost phrase for some cells: ``"about N gradient evaluations"`` where every
    sampler's cost is fixed, ``"N to M gradient evaluations"`` where it varies (NUTS's tree
    depth), ``"at least N ..."`` where it has no bound."""
    low = high = 0
    for settings in cells_settings:
        a, b = grad_evals_range(settings)
        low += a
        high = None if high is None or b is None else high + b
    if high == low:
        return f"about {low:,} gradient evaluations"
    if high is None:
        return f"at least {low:,} gradient evaluations"
    return f"{low:,} to {high:,} gradient evaluations"


def estimate_grad_evals(settings: dict[str, Any]) -> int:
    """A rough count of a cell's gradient evaluations: the geometric middle of
    :func:`grad_evals_range` (its low end where there is no bound)."""
    low, high = grad_evals_range(settings)
    return low if high is None else int(round(math.sqrt(low * high)))


def parse_shard(text: str) -> tuple[int, int]:
    """``"I/K"`` -> ``(I, K)`` with ``0 <= I < K``; :class:`ConfigError` otherwise."""
    try:
        left, right = str(text).split("/")
        index, count = int(left), int(right)
    except ValueError:
        raise _bad("shard", "I/K with integers 0 <= I < K, e.g. 0/4", text) from None
    if count < 1 or not 0 <= index < count:
        raise _bad("shard", "I/K with integers 0 <= I < K, e.g. 0/4", text)
    return index, count


def select_shard(cells: list[Cell], shard: tuple[int, int] | None) -> list[Cell]:
    """The cells of shard ``(I, K)``: index in the sorted list of keys ``= I mod K``; grid order kept."""
    if shard is None:
        return list(cells)
    index, count = shard
    rank = {key: i for i, key in enumerate(sorted(c.key for c in cells))}
    return [c for c in cells if rank[c.key] % count == index]
