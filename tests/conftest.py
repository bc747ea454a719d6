"""Shared test set-up: environment, small data sets and helpers.

Nothing here changes JAX's global configuration: tests that need float64 use
``with jax.enable_x64(True):`` (the package must never depend on the global
flag).  ``jax_numpy_rank_promotion="raise"`` is *not* set: the NTK layers add
biases by broadcasting ``(n, d) + (d,)``, which is idiomatic and intended.
"""

from __future__ import annotations

import getpass
import importlib.util
import os
import tempfile
from pathlib import Path

# One BLAS thread for the LAPACK behind JAX's CPU Cholesky/eigh (see reprior._util.blas):
# multi-threaded OpenBLAS on small matrices is up to 1000x slower on a busy machine.
# Must be set before SciPy's OpenBLAS is loaded, i.e. before the first JAX linear algebra.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

# Tests compile many small programs and run each for milliseconds: XLA's LLVM
# optimisations cost about a third of the CPU time of the suite and buy nothing here.
# Both flags are long-standing XLA debug options; set before JAX starts its backend.
_FAST_COMPILE = ("--xla_backend_optimization_level=0", "--xla_llvm_disable_expensive_passes=true")
_flags = os.environ.get("XLA_FLAGS", "")
os.environ["XLA_FLAGS"] = " ".join([_flags, *(f for f in _FAST_COMPILE if f.split("=")[0] not in _flags)]).strip()

# JAX's persistent compilation cache, shared by this process and the interpreters the tests
# start (benchmark scripts, docs examples, the CLI): they inherit the environment, so a
# function compiled once -- in this run or an earlier one -- is read back instead of recompiled.
# Set through the environment, never jax.config, so the package's own configuration is untouched;
# a value already in the environment wins (`JAX_COMPILATION_CACHE_DIR=` empty turns it off).
_user = os.getuid() if hasattr(os, "getuid") else getpass.getuser()
_cache_dir = Path(tempfile.gettempdir()) / f"reprior-jax-cache-{_user}"
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(_cache_dir))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")  # the sub-second compiles too
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "-1")  # every size
if importlib.util.find_spec("filelock") is not None:
    # A size bound enables JAX's LRU eviction, whose file lock also keeps concurrent test
    # processes from reading an entry while another writes it.
    os.environ.setdefault("JAX_COMPILATION_CACHE_MAX_SIZE", str(2 * 1024**3))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402


_LONG_TESTS = Path(__file__).with_name("long_tests.txt")


def _long_test_ids() -> set[str]:
    lines = _LONG_TESTS.read_text().splitlines()
    return {line.strip() for line in lines if line.strip() and not line.startswith("#")}


@pytest.hookimpl(tryfirst=True)  # before -m selects, so `not long` sees the mark
def pytest_collection_modifyitems(config, items):
    """Mark the tests listed in ``tests/long_tests.txt`` ``long`` (the list is checked by
    ``tests/test_long_tests.py``)."""
    wanted = _long_test_ids()
    for item in items:
        if item.nodeid in wanted:
            item.add_marker(pytest.mark.long)


def regression_data(n: int, in_dim: int = 2, out_dim: int = 1, *, seed: int = 0, noise: float = 0.2):
    """Smooth synthetic regression data as float64 NumPy arrays ``x: (n, in_dim)``, ``y: (n, out_dim)``."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-2.0, 2.0, (n, in_dim))
    w = rng.standard_normal((in_dim, out_dim)) / np.sqrt(in_dim)
    y = np.sin(x @ w) + 0.5 * x[:, :1] + noise * rng.standard_normal((n, out_dim))
    return x, y


def float_dtype():
    """The default float dtype in the current x64 mode (float32 or float64)."""
    return jnp.zeros(()).dtype


def assert_tree_allclose(a, b, *, rtol, atol=0.0):
    """``np.testing.assert_allclose`` over two pytrees with the same structure."""
    leaves_a, tree_a = jax.tree_util.tree_flatten(a)
    leaves_b, tree_b = jax.tree_util.tree_flatten(b)
    assert tree_a == tree_b
    for x, y in zip(leaves_a, leaves_b, strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol)


def dense_repriorisation(psi, y, noise_std, phi_out, root: str = "symmetric"):
    """The repriorisation map from the dense ``p x p`` matrices, in plain NumPy (a reference for tests).

    :math:`G = \\Psi^\\top\\Psi + \\sigma^2 I_p`, :math:`\\mu = G^{-1}\\Psi^\\top Y` by a dense solve,
    and the root :math:`R` (:math:`RR^\\top = G^{-1}`): ``"symmetric"``, :math:`G^{-1/2}` from NumPy's
    eigendecomposition of :math:`G`; ``"cholesky"``, the dual form's push-through root
    :math:`\\sigma R = I_p - A^\\top L^{-\\top}(L + I)^{-1}A` (:math:`A = \\Psi/\\sigma`,
    :math:`LL^\\top = I_n + AA^\\top`) formed densely; ``"package"``, the one
    :func:`reprior.core.repriorise.readout_factorisation` uses (``"cholesky"`` when ``n <= p``).  Returns
    :math:`\\theta_{\\mathrm{out}} = \\mu + \\sigma R\\,\\phi_{\\mathrm{out}}` ``(p, k)`` and the
    log-Jacobian :math:`\\log|\\det\\partial\\theta_{\\mathrm{out}}/\\partial\\phi_{\\mathrm{out}}| =
    k\\,(p\\log\\sigma - \\tfrac12\\log\\det G)` (``slogdet``), so that
    :math:`\\log p(\\phi, Y) = \\log p(\\theta(\\phi), Y) + \\log|\\det|` is the density of the repriorised
    coordinates by the change of variables alone, with none of the package's ``n x n`` identities.
    """
    psi, y, phi_out = (np.asarray(a, np.float64) for a in (psi, y, phi_out))
    (n, p), k = psi.shape, y.shape[1]
    gram = psi.T @ psi + noise_std**2 * np.eye(p)
    if root == "package":
        root = "cholesky" if n <= p else "symmetric"
    if root == "symmetric":
        evals, evecs = np.linalg.eigh(gram)
        scaled_root = noise_std * evecs @ np.diag(evals**-0.5) @ evecs.T
    else:
        a = psi / noise_std
        chol = np.linalg.cholesky(np.eye(n) + a @ a.T)
        scaled_root = np.eye(p) - a.T @ np.linalg.solve(chol.T, np.linalg.solve(chol + np.eye(n), a))
    theta_out = np.linalg.solve(gram, psi.T @ y) + scaled_root @ phi_out
    sign, logdet = np.linalg.slogdet(gram)
    assert sign == 1
    return theta_out, k * (p * np.log(noise_std) - 0.5 * logdet)


def importance_sampling_predictive(bnn, x, y, x_test, *, num_draws: int = 20_000, seed: int = 2024):
    """Exact posterior predictive moments of f at ``x_test`` (one output) by importance sampling from the prior.

    The collapsed posterior of the hidden weights is prior x marginal likelihood, so with prior
    draws :math:`h_i` the self-normalised weights are :math:`w_i \\propto p(Y | h_i)`, and given
    :math:`h_i` the predictive of f is Gaussian: with :math:`K = \\Psi\\Psi^T`,
    :math:`Y \\sim N(0, K + s^2 I)`, mean :math:`K_*^T (K + s^2 I)^{-1} Y` and variance
    :math:`\\mathrm{diag}(K_{**} - K_*^T (K + s^2 I)^{-1} K_*)`.  JAX computes only the features
    (matrix products); the linear algebra is NumPy's batched routines, independent of
    ``reprior.core.repriorise`` (the code under test), and not XLA's batched CPU factorisations (a vmap of
    20 000 of them once stopped, all threads idle, inside a long pytest run).

    Returns the mean and sd of f, their standard errors (delta method) and the effective
    sample size :math:`1 / \\sum w_i^2`.
    """
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64).reshape(len(x), -1)
    with jax.enable_x64(True):
        xj, xt = jnp.asarray(x), jnp.asarray(x_test, jnp.float64)

        def features(key):
            params = bnn.init(key, xj, 1)
            return bnn.features(params, xj), bnn.features(params, xt)

        keys = jax.random.split(jax.random.key(seed), num_draws)
        psi, psi_test = (np.asarray(a) for a in jax.jit(jax.vmap(features))(keys))
    gram = psi @ psi.transpose(0, 2, 1) + bnn.noise_std**2 * np.eye(len(x))
    cross = psi @ psi_test.transpose(0, 2, 1)  # (draws, n, m)
    y0 = y[:, 0]
    alpha = np.linalg.solve(gram, np.broadcast_to(y0, (num_draws, len(x)))[..., None])[..., 0]
    log_lik = -0.5 * (np.einsum("dn,n->d", alpha, y0) + np.linalg.slogdet(gram)[1] + len(x) * np.log(2 * np.pi))
    m = np.einsum("dnm,dn->dm", cross, alpha)
    v = np.sum(psi_test**2, axis=2) - np.einsum("dnm,dnm->dm", cross, np.linalg.solve(gram, cross))
    w = np.exp(log_lik - log_lik.max())
    w /= w.sum()
    mean = w @ m
    second = w @ (v + m**2)
    sd = np.sqrt(second - mean**2)
    mean_se = np.sqrt(w**2 @ (m - mean) ** 2)
    sd_influence = ((v + m**2 - second) - 2 * mean * (m - mean)) / (2 * sd)
    sd_se = np.sqrt(w**2 @ sd_influence**2)
    return {"mean": mean, "sd": sd, "mean_se": mean_se, "sd_se": sd_se, "ess": 1 / np.sum(w**2)}


def predictive_moments(idata, var: str = "f_test"):
    """Mean and sd over draws of ``var`` (output 0), their Monte Carlo standard errors, bulk ESS and R-hat (ArviZ)."""
    import arviz as az

    f = idata.posterior_predictive[var].sel(output=0).astype(np.float64).to_dataset()  # a Dataset on any ArviZ
    return {
        "mean": f[var].mean(("chain", "draw")).values,
        "sd": f[var].std(("chain", "draw")).values,
        "mean_se": az.mcse(f, method="mean")[var].values,
        "sd_se": az.mcse(f, method="sd")[var].values,
        "ess": az.ess(f, method="bulk")[var].values,
        "rhat": az.rhat(f)[var].values,
    }


def assert_predictives_agree(a, b, label, *, teeth: float = 0.2, sd_teeth: float | None = None):
    """|a - b| < 4 sqrt(se_a^2 + se_b^2) for the mean and the sd at each test point.

    The test has teeth: the tolerance must be below ``teeth`` times ``b``'s posterior sd
    (``sd_teeth`` for the sd, default ``teeth``: the Monte Carlo error of an sd goes with the
    ESS of the squared deviations, which is lower than the bulk ESS when the spread of f
    mixes more slowly than its centre).
    """
    for stat in ("mean", "sd"):
        tol = 4 * np.sqrt(a[f"{stat}_se"] ** 2 + b[f"{stat}_se"] ** 2)
        power = teeth if stat == "mean" or sd_teeth is None else sd_teeth
        assert np.all(tol < power * b["sd"]), (label, stat, tol, b["sd"])
        diff = np.abs(a[stat] - b[stat])
        assert np.all(diff < tol), f"{label} {stat}: |diff| {diff} >= tolerance {tol}"


@pytest.fixture
def rng():
    """A fresh, seeded NumPy generator per test."""
    return np.random.default_rng(0)


# -- running scripts in fresh interpreters ---------------------------------------------
_RUNNER = """
import contextlib, io, json, os, sys, traceback
with open(sys.argv[1]) as f:
    jobs = json.load(f)
for path in jobs.pop("__sys_path__"):
    sys.path.insert(0, path)
workdir, results = jobs.pop("__workdir__"), {}
for name, (source, argv) in jobs.items():
    os.makedirs(os.path.join(workdir, name), exist_ok=True)
    os.chdir(os.path.join(workdir, name))
    sys.argv, out = argv, io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            exec(compile(source, argv[0], "exec"), {"__name__": "__main__", "__file__": argv[0]})
        error = None
    except SystemExit as stop:  # a script's `raise SystemExit(main())`: 0 or None is success
        error = None if stop.code in (0, None) else traceback.format_exc()
    except BaseException:
        error = traceback.format_exc()
    results[name] = {"error": error, "stdout": out.getvalue()}
print("RESULTS " + json.dumps(results))
"""


def run_in_fresh_interpreters(jobs: dict, workdir, *, sys_path=(), env=None, num_procs=None,
                              timeout: float = 1800) -> dict:
    """Run Python sources as ``__main__`` scripts in a few fresh interpreters, at once.

    ``jobs: {name: (source, argv)}``: each job runs with ``sys.argv = argv`` (``argv[0]``
    is its file name), in its own namespace and its own directory ``workdir/name``, its
    output captured.  The jobs are dealt in order to ``num_procs`` interpreters (default:
    one per CPU core), so JAX starts once per interpreter, not once per job, and a job runs
    after the jobs before it in its interpreter.  Returns ``{name: {"error": traceback or
    None, "stdout": text}}``; an interpreter that dies fails the calling test.
    """
    import json
    import subprocess
    import sys

    names = list(jobs)
    num_procs = max(1, min(len(names), num_procs or os.cpu_count() or 1))
    workdir = Path(workdir)
    procs = []
    for i in range(num_procs):
        spec = {"__sys_path__": [str(p) for p in sys_path], "__workdir__": str(workdir),
                **{name: list(jobs[name]) for name in names[i::num_procs]}}
        spec_path = workdir / f"jobs_{i}.json"
        spec_path.write_text(json.dumps(spec))
        procs.append(subprocess.Popen([sys.executable, "-c", _RUNNER, str(spec_path)], env=env, cwd=workdir,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    results = {}
    for proc in procs:
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            for other in procs:
                other.kill()
            raise
        lines = [line for line in stdout.splitlines() if line.startswith("RESULTS ")]
        assert proc.returncode == 0 and lines, stderr[-5000:]
        results.update(json.loads(lines[-1][len("RESULTS "):]))
    return results
