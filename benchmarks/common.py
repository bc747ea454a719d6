"""Shared helpers of the benchmark scripts: header, timing, memory, mixing metrics, tables, JSON.

Every script prints a header (machine, versions, the exact command, BLAS/OpenMP
thread settings, JAX devices), one or more tables, and writes its results as
JSON to ``benchmarks/results/<name>.json`` (git-ignored) and, if given, to the
path of ``--json``.

Timing
    :func:`time_interleaved` times several already-compiled functions side by
    side: in each round every function is called once (``block_until_ready``),
    and the reported time is the median over rounds.  Interleaving makes the
    ratios between functions robust to drifting background load (this machine
    is shared); compilation is timed apart (``jit(...).lower(...).compile()``).

Threads
    OpenBLAS (which JAX's CPU LAPACK calls: Cholesky, eigh, triangular
    factorisations) busy-waits its worker threads; on a loaded 2-core machine a
    128 x 128 Cholesky-and-gradient then costs 200 ms instead of 1 ms.  Importing
    this module therefore sets ``OPENBLAS_NUM_THREADS=1`` unless the variable is
    already set (the header records which; ``env_set_by_benchmark``).  Run with
    ``OPENBLAS_NUM_THREADS=2 python benchmarks/...`` to measure otherwise.
    XLA's own kernels (matrix products, convolutions) use XLA's thread pool and
    are not affected.

Memory (two figures, both host memory; JAX runs on the CPU here)
    ``xla_bytes``: XLA's own accounting of the compiled executable
    (``compiled.memory_analysis()``: arguments + outputs + temporaries, minus
    aliased buffers), i.e. the peak of the buffers the computation needs.
    ``peak_rss_delta_bytes``: the rise of the process's resident-set high-water
    mark (``VmHWM`` of ``/proc/self/status``) over its resident set just before
    one execution, after resetting the high-water mark by writing ``5`` to
    ``/proc/self/clear_refs`` (Linux >= 4.0).  Where that reset is not
    available it falls back to ``resource.getrusage(RUSAGE_SELF).ru_maxrss``,
    which is monotone over the process, and says so (``rss_method``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

# Before NumPy, SciPy or JAX load OpenBLAS (see the module docstring).
ENV_SET_BY_BENCHMARK = {}
if "OPENBLAS_NUM_THREADS" not in os.environ:
    os.environ["OPENBLAS_NUM_THREADS"] = ENV_SET_BY_BENCHMARK["OPENBLAS_NUM_THREADS"] = "1"

import numpy as np  # noqa: E402

RESULTS_DIR = Path(__file__).resolve().parent / "results"
THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "XLA_FLAGS",
              "JAX_ENABLE_X64", "JAX_PLATFORMS")


# -- command line -------------------------------------------------------------------
def parser(description: str) -> argparse.ArgumentParser:
    """An ``ArgumentParser`` with the options every benchmark takes."""
    p = argparse.ArgumentParser(description=description,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny sizes (seconds): checks the script, not timings")
    p.add_argument("--json", type=Path, default=None, help="also write the results to this path")
    p.add_argument("--seed", type=int, default=0, help="seed of data split, parameters and sampler")
    p.add_argument("--noise-std", type=float, default=0.1, help="observation noise standard deviation")
    return p


def add_nuts_options(p: argparse.ArgumentParser) -> None:
    """The chain and NUTS options shared by the mixing benchmarks."""
    p.add_argument("--num-chains", type=int, default=2)
    p.add_argument("--num-warmup", type=int, default=200)
    p.add_argument("--num-samples", type=int, default=200)
    p.add_argument("--chain-method", default="sequential")
    p.add_argument("--target-accept", type=float, default=0.8)
    p.add_argument("--max-tree-depth", type=int, default=10)


def int_list(text: str) -> list[int]:
    """``"64,256"`` -> ``[64, 256]`` (for argparse ``type=``)."""
    return [int(v) for v in text.split(",") if v.strip()]


# -- header ---------------------------------------------------------------------------
def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).resolve().parent, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, cwd=Path(__file__).resolve().parent, timeout=10)
        return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return ""


def header() -> dict:
    """Machine, versions, exact command, thread settings and JAX devices."""
    import jax
    import jaxlib

    versions = {"python": platform.python_version(), "jax": jax.__version__, "jaxlib": jaxlib.__version__,
                "numpy": np.__version__}
    for name in ("numpyro", "arviz", "scipy", "reprior"):
        try:
            versions[name] = __import__(name).__version__
        except ImportError:
            versions[name] = None
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    return {
        "machine": f"{platform.machine()} {platform.system()} {platform.release()}",
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "load_average_at_start": load,
        "versions": versions,
        "git_commit": _git_commit(),
        "command": " ".join(shlex.quote(a) for a in [Path(sys.executable).name, *sys.argv]),
        "cwd": os.getcwd(),
        "env": {name: os.environ.get(name, "") for name in THREAD_ENV},
        "env_set_by_benchmark": dict(ENV_SET_BY_BENCHMARK),
        "jax_backend": jax.default_backend(),
        "jax_devices": [str(d) for d in jax.devices()],
        "started": time.strftime("%Y-%m-%d %H:%M:%S %z"),
    }


def print_header(info: dict, title: str) -> None:
    print(f"# {title}")
    print(f"machine : {info['machine']} | {info['cpu']} | {info['cpu_count']} cpus | "
          f"load avg {info['load_average_at_start']}")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in info["versions"].items()))
    print(f"commit  : {info['git_commit']}")
    print(f"command : {info['command']}")
    print("threads : " + ", ".join(f"{k}={v!r}" for k, v in info["env"].items())
          + (f" (set by the benchmark: {sorted(info['env_set_by_benchmark'])})" if info["env_set_by_benchmark"] else ""))
    print(f"jax     : backend {info['jax_backend']}, devices {info['jax_devices']}")
    print(flush=True)


# -- timing -----------------------------------------------------------------------------
def compile_fn(fn: Callable, *args):
    """``(compiled, seconds)``: ahead-of-time compilation of ``jax.jit(fn)`` at ``args``."""
    import jax

    start = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    return compiled, time.perf_counter() - start


def time_call(fn: Callable, *args) -> float:
    """Seconds of one call of ``fn(*args)``, waiting for the result (``block_until_ready``)."""
    import jax

    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    return time.perf_counter() - start


def time_interleaved(fns: dict, args: dict, *, rounds: int = 7, max_seconds: float = 20.0,
                     min_rounds: int = 3, slow_seconds: float = 5.0, warmed: dict | None = None) -> dict:
    """Median seconds per call of each compiled function, timed in interleaved rounds.

    Args:
        fns: ``{name: compiled_fn}`` (already compiled: no tracing is timed).
        args: ``{name: tuple of arguments}``.
        rounds: rounds of one call per function, after one untimed warm call each
            (skipped for the names in ``warmed``, already called once).
        max_seconds: a function stops being called once it has ``min_rounds``
            timings and its timed calls exceed this many seconds in total.
        slow_seconds: a function whose warm call took longer than this needs one
            timing only (a call that long is barely affected by timer noise).
        warmed: ``{name: seconds of the warm call}`` already made by the caller.

    Returns ``{name: {"median": s, "min": s, "times": [s, ...], "warm": s}}``.
    """
    warmed = dict(warmed or {})
    for name, fn in fns.items():
        if name not in warmed:
            warmed[name] = time_call(fn, *args[name])  # first-call allocations, caches
    times = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            needed = 1 if warmed[name] > slow_seconds else min_rounds
            if len(times[name]) >= needed and sum(times[name]) > max_seconds:
                continue
            times[name].append(time_call(fn, *args[name]))
    return {name: {"median": statistics.median(t), "min": min(t), "times": t, "warm": warmed[name]}
            for name, t in times.items()}


# -- memory -----------------------------------------------------------------------------
def xla_bytes(compiled) -> int | None:
    """Bytes of the buffers a compiled executable needs (arguments + outputs + temporaries - aliases)."""
    try:
        m = compiled.memory_analysis()
    except Exception:  # noqa: BLE001 - not every backend implements it
        return None
    if m is None:
        return None
    return int(m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes
               - m.alias_size_in_bytes)


def xla_flops(compiled) -> float | None:
    """Floating-point operations XLA counts in a compiled executable (``cost_analysis()``).

    LAPACK custom calls (Cholesky, eigh on CPU) are opaque to XLA and count as 0.
    """
    try:
        cost = compiled.cost_analysis()
    except Exception:  # noqa: BLE001 - not every backend implements it
        return None
    if isinstance(cost, (list, tuple)):
        cost = cost[0] if cost else None
    return None if not cost or "flops" not in cost else float(cost["flops"])


def _status_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_hwm() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_rss_delta(fn: Callable, *args) -> dict:
    """Rise of the resident-set high-water mark over one call of ``fn(*args)`` (see module doc).

    Returns ``peak_rss_delta_bytes``, ``rss_method``, ``seconds`` (of that call) and ``output``.
    """
    import jax
    import resource

    if _reset_hwm() and _status_kib("VmHWM") is not None:
        before = _status_kib("VmRSS")
        start = time.perf_counter()
        out = jax.block_until_ready(fn(*args))
        seconds = time.perf_counter() - start
        return {"peak_rss_delta_bytes": 1024 * max(0, _status_kib("VmHWM") - before),
                "rss_method": "VmHWM after clear_refs", "seconds": seconds, "output": out}
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    out = jax.block_until_ready(fn(*args))
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"peak_rss_delta_bytes": 1024 * (after - before), "rss_method": "ru_maxrss (monotone)",
            "seconds": seconds, "output": out}


def process_peak_rss_bytes() -> int:
    """Peak resident set of the whole process so far (``ru_maxrss``)."""
    import resource

    return 1024 * resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


# -- mixing metrics -----------------------------------------------------------------------
def _ess_columns(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bulk and tail ESS of every column of ``samples: (chain, draw, m)``."""
    import arviz as az

    bulk = np.array([float(az.ess(samples[..., j], method="bulk")) for j in range(samples.shape[-1])])
    tail = np.array([float(az.ess(samples[..., j], method="tail")) for j in range(samples.shape[-1])])
    return bulk, tail


def prediction_projections(f_test: np.ndarray, num: int = 10, seed: int = 0) -> np.ndarray:
    """Fixed random unit projections of flattened test predictions: ``(chain, draw, m, k) -> (chain, draw, num)``."""
    from reprior.core.projections import projection_matrix

    c, d = f_test.shape[:2]
    flat = f_test.reshape(c, d, -1)
    return flat @ projection_matrix(flat.shape[-1], num, seed)


def run_attrs(idata) -> dict:
    """The timings and counts ``reprior.sample`` stores (on the InferenceData, or on its groups)."""
    attrs = dict(getattr(idata, "attrs", None) or {})
    return attrs if "grad_evals_sampling" in attrs else {**idata.posterior.attrs, **attrs}


def fallback_metrics(idata) -> dict:
    """ESS of ``theta_proj`` and of fixed projections of ``f_test`` (ArviZ), per draw, gradient, second."""
    attrs = run_attrs(idata)
    grads = int(attrs["grad_evals_sampling"])
    seconds = float(attrs["sample_seconds"])
    out = {}
    groups = {"theta": np.asarray(idata.posterior["theta_proj"])}
    if "posterior_predictive" in idata.groups() and "f_test" in idata.posterior_predictive:
        groups["pred"] = prediction_projections(np.asarray(idata.posterior_predictive["f_test"]))
    num_draws = groups["theta"].shape[0] * groups["theta"].shape[1]
    for name, samples in groups.items():
        bulk, tail = _ess_columns(samples)
        out[f"ess_bulk_{name}_median"] = float(np.median(bulk))
        out[f"ess_bulk_{name}_min"] = float(np.min(bulk))
        out[f"ess_tail_{name}_median"] = float(np.median(tail))
        out[f"ess_per_draw_{name}"] = float(np.median(bulk)) / num_draws
        out[f"ess_per_grad_{name}"] = float(np.median(bulk)) / grads
        out[f"ess_per_second_{name}"] = float(np.median(bulk)) / seconds
    return out


def mixing_metrics(idata) -> dict:
    """Mixing metrics of a ``reprior.sample`` result, plus sampler statistics.

    Uses ``reprior.evaluation.diagnostics.cell_metrics`` where it exists (``metrics_source``
    says which), else :func:`fallback_metrics`.  The keys used by the benchmark
    tables (``ess_bulk_{pred,theta}_median``, ``ess_per_grad_{pred,theta}``,
    ``ess_per_second_{pred,theta}``) are recomputed by the fallback when
    ``cell_metrics`` lacks them.
    """
    out = {}
    try:
        from reprior.evaluation.diagnostics import cell_metrics

        out.update({k: _plain(v) for k, v in cell_metrics(idata).items()})
        out["metrics_source"] = "reprior.evaluation.diagnostics.cell_metrics"
    except ImportError:
        out["metrics_source"] = "benchmarks.common.fallback_metrics"
    needed = [f"{m}_{g}" for m in ("ess_per_grad", "ess_per_second") for g in ("pred", "theta")]
    needed += ["ess_bulk_pred_median", "ess_bulk_theta_median"]
    if any(k not in out or out[k] is None for k in needed):
        fb = fallback_metrics(idata)
        for k, v in fb.items():
            out.setdefault(k, v)
        if out["metrics_source"] != "benchmarks.common.fallback_metrics":
            out["metrics_source"] += " + fallback"
    stats = idata.sample_stats
    attrs = run_attrs(idata)
    num_draws = int(stats["num_steps"].size)
    out.update({
        "num_chains": int(stats["num_steps"].shape[0]),
        "num_draws": int(stats["num_steps"].shape[1]),
        "accept_prob_mean": float(np.mean(stats["accept_prob"])),
        "num_divergent": int(np.sum(stats["diverging"])),
        "steps_per_draw_mean": float(np.mean(stats["num_steps"])),
        "steps_per_draw_median": float(np.median(stats["num_steps"])),
        "step_size_mean": float(np.mean(stats["step_size"])),
        "grad_evals_sampling": int(attrs["grad_evals_sampling"]),
        "grad_evals_warmup": int(attrs.get("grad_evals_warmup", 0)),
        "sample_seconds": float(attrs["sample_seconds"]),
        "warmup_seconds": float(attrs.get("warmup_seconds", 0.0)),
        "compile_seconds": float(attrs.get("compile_seconds", 0.0)),
        "num_traces": int(attrs.get("num_traces", -1)),
        "num_params": int(attrs.get("num_params", 0)),
        "seconds_per_grad_sampling": float(attrs["sample_seconds"]) / max(1, int(attrs["grad_evals_sampling"])),
        "draws_total": num_draws,
    })
    return out


def _plain(value):
    """JSON-friendly scalar."""
    if isinstance(value, (np.generic,)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    return value


def ratio(a, b):
    """``a / b``, or None when either is missing or ``b`` is zero."""
    if a is None or b is None or b == 0:
        return None
    return float(a) / float(b)


# -- output ---------------------------------------------------------------------------------
def fmt(value, spec: str = ".3g") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return format(value, spec)
    return str(value)


def table(rows: list[dict], columns: list[tuple[str, str, str]]) -> str:
    """Markdown table; ``columns`` are ``(key, heading, format spec)``."""
    head = "| " + " | ".join(h for _, h, _ in columns) + " |"
    sep = "|" + "|".join("---:" if spec else "---" for _, _, spec in columns) + "|"
    body = ["| " + " | ".join(fmt(r.get(k), spec or "") for k, _, spec in columns) + " |" for r in rows]
    return "\n".join([head, sep, *body])


def write_json(name: str, data: dict, extra_path: Path | None = None) -> list[Path]:
    """Write ``data`` to ``benchmarks/results/<name>.json`` and to ``extra_path`` if given."""
    paths = [RESULTS_DIR / f"{name}.json"]
    if extra_path is not None:
        paths.append(Path(extra_path))
    text = json.dumps(data, indent=1, default=_plain, allow_nan=True)
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path}")
    return paths
