"""Tests for reprior.inference.samplers.split_hmc: HMC split at the N(0, I) prior (kicks and exact rotations).

The references are written from the maths (the module docstring of
:mod:`reprior.inference.samplers.split_hmc`), in NumPy, not from the code: the integrator
as a loop of kicks and rotations, the energy error as the difference of the
full Hamiltonian.  Monte Carlo checks use 4 Monte Carlo standard errors
(ArviZ's ``mcse``, from the ESS of the very series averaged) with fixed seeds,
never tuned: a two-sided normal tail of 6e-5 per check.
"""

import math

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import importance_sampling_predictive, predictive_moments
from numpyro.infer import MCMC

import reprior
import reprior.experiments.data
from reprior.evaluation import sbc
from reprior.inference.kernels import get_kernel, kernel_names, make_kernel
from reprior.inference.samplers import Density
from reprior.inference.samplers import integrators as integ
from reprior.inference.samplers.split_hmc import SplitHMCParams, build_kernel, init, propose

#: McLachlan's two-stage coefficient, written out here rather than read from the module.
MCLACHLAN_B = 0.1931833275037836


# -- targets with closed forms ------------------------------------------------------------------
class Conjugate:
    """Prior N(0, I_d), likelihood l(z) = -|A z - b|^2 / (2 s^2): posterior N(mean, cov) in closed form."""

    def __init__(self, dim=3, num_data=5, noise_std=0.8, seed=0):
        rng = np.random.default_rng(seed)
        self.a = rng.standard_normal((num_data, dim))
        self.b = self.a @ rng.standard_normal(dim) + noise_std * rng.standard_normal(num_data)
        self.s2 = noise_std**2
        self.cov = np.linalg.inv(np.eye(dim) + self.a.T @ self.a / self.s2)
        self.mean = self.cov @ self.a.T @ self.b / self.s2

    def log_likelihood(self, z):
        return -0.5 * jnp.sum((self.a @ z["z"] - self.b) ** 2) / self.s2

    @property
    def density(self):
        return Density(self.log_likelihood, lambda z: self.log_likelihood(z) - 0.5 * jnp.sum(z["z"] ** 2))

    def exact_draws(self, num, seed):
        rng = np.random.default_rng(seed)
        return self.mean + rng.standard_normal((num, self.mean.size)) @ np.linalg.cholesky(self.cov).T


class Logistic:
    """A non-Gaussian likelihood: logistic regression, l(z) = sum_i y_i (Az)_i - log(1 + exp((Az)_i))."""

    def __init__(self, dim=5, num_data=8, seed=0):
        rng = np.random.default_rng(seed)
        self.a = 1.5 * rng.standard_normal((num_data, dim))
        self.y = (rng.uniform(size=num_data) < 0.5).astype(np.float64)

    def log_likelihood(self, z):  # flat z, JAX
        eta = jnp.asarray(self.a) @ z
        return jnp.sum(self.y * eta - jnp.logaddexp(0.0, eta))

    # NumPy, from the formula
    def np_log_likelihood(self, z):
        eta = self.a @ z
        return float(np.sum(self.y * eta - np.logaddexp(0.0, eta)))

    def np_grad(self, z):
        return self.a.T @ (self.y - 1.0 / (1.0 + np.exp(-(self.a @ z))))

    def flat_density(self):
        return Density(self.log_likelihood, lambda z: self.log_likelihood(z) - 0.5 * z @ z).on_flat(lambda f: f)


# -- the NumPy reference ------------------------------------------------------------------------
def np_rotate(z, v, t):
    return np.cos(t) * z + np.sin(t) * v, -np.sin(t) * z + np.cos(t) * v


def np_integrate(grad_fn, z, v, h, num_steps, integrator="strang"):
    """Kicks v += t grad l(z) and exact rotations by t, composed as the module docstring writes them."""
    z, v = np.array(z, np.float64), np.array(v, np.float64)
    for _ in range(num_steps):
        if integrator == "strang":  # K(h/2) R(h) K(h/2)
            v = v + 0.5 * h * grad_fn(z)
            z, v = np_rotate(z, v, h)
            v = v + 0.5 * h * grad_fn(z)
        else:  # K(b h) R(h/2) K((1 - 2b) h) R(h/2) K(b h)
            v = v + MCLACHLAN_B * h * grad_fn(z)
            z, v = np_rotate(z, v, 0.5 * h)
            v = v + (1 - 2 * MCLACHLAN_B) * h * grad_fn(z)
            z, v = np_rotate(z, v, 0.5 * h)
            v = v + MCLACHLAN_B * h * grad_fn(z)
    return z, v


def np_hamiltonian(loglik_fn, z, v):
    """H = -l(z) + |z|^2/2 + |v|^2/2, directly (a few dimensions in float64: no cancellation to fear)."""
    return -loglik_fn(z) + 0.5 * z @ z + 0.5 * v @ v


# -- helpers ------------------------------------------------------------------------------------
def _run(kernel, init, *, num_warmup, num_samples, seed=0):
    """Vectorised chains (one per row of ``init``) in a jitted scan: positions, momenta and statistics."""
    stats_fn = get_kernel("split_hmc").stats_fn

    def chain(key, z0):
        state = kernel.init(key, num_warmup, {"z": z0}, (), {})

        def body(state, _):
            state = kernel.sample(state, (), {})
            return state, (state.z["z"], state.kernel_state.momentum, stats_fn(state))

        return jax.lax.scan(body, state, None, length=num_warmup + num_samples)[1]

    keys = jax.random.split(jax.random.key(seed), init.shape[0])
    out = jax.jit(jax.vmap(chain))(keys, jnp.asarray(init))
    return jax.tree_util.tree_map(lambda a: np.asarray(a)[:, num_warmup:], out)


def _assert_mean_within_4_mcse(series, truth, what):
    """|mean - truth| < 4 MCSE; ``series: (chain, draw)``.  Returns the ESS."""
    ess = float(az.ess(series, method="mean"))
    mcse = float(az.mcse(series, method="mean"))
    assert abs(np.mean(series) - truth) < 4 * mcse, f"{what}: {np.mean(series):.5f} vs {truth:.5f} (mcse {mcse:.5f})"
    return ess


# -- invariance of the conjugate posterior ------------------------------------------------------
@pytest.mark.parametrize("options", [
    {},  # the defaults: 6 Strang steps of a quarter turn, jitter 0.2, full refresh, tuned to 0.8
    {"momentum_refresh": 0.3, "num_steps": 2},  # partial refresh: momentum persists, flipped on rejection
    {"integrator": "mclachlan", "num_steps": 3, "step_size_jitter": 0.0},
    {"integration_time": 3.0, "num_steps": 12},  # nearly half a turn: close to antithetic
])
def test_conjugate_posterior_moments_within_4_mcse_x64(options):
    """Chains started at exact posterior draws: after warm-up, the first two moments match the closed form.

    Each of the 3 means and 6 covariance entries E[(z_i - m_i)(z_j - m_j)] is
    checked against 4 MCSEs of its own series: 9 checks at about 6e-5 each, a
    false alarm about once in 2000 runs of a case.  The ESS floor keeps the MCSE
    meaningful (ArviZ's MCSE is reliable only for chains that mixed).
    """
    with jax.enable_x64(True):
        target = Conjugate()
        kernel = make_kernel("split_hmc", target.density, options)
        draws, _, stats = _run(kernel, target.exact_draws(4, seed=1), num_warmup=500, num_samples=3000)
    assert draws.dtype == np.float64
    assert not np.any(stats["diverging"]) and not np.any(stats["nonfinite"])
    min_ess = np.inf
    for i in range(3):
        min_ess = min(min_ess, _assert_mean_within_4_mcse(draws[..., i], target.mean[i], f"mean[{i}]"))
        for j in range(i, 3):
            product = (draws[..., i] - target.mean[i]) * (draws[..., j] - target.mean[j])
            _assert_mean_within_4_mcse(product, target.cov[i, j], f"cov[{i},{j}]")
    assert min_ess > 1000


# -- the integrator and the acceptance at a frozen step -----------------------------------------
@pytest.mark.parametrize("integrator", ["strang", "mclachlan"])
@pytest.mark.parametrize("step_size, num_steps", [(0.05, 1), (0.3, 5), (0.8, 4)])
def test_proposal_and_acceptance_match_numpy_x64(integrator, step_size, num_steps):
    """End point, energy error and acceptance of one trajectory against the NumPy integrator and full H."""
    with jax.enable_x64(True):
        target = Logistic()
        rng = np.random.default_rng(int(100 * step_size) + num_steps)
        z, v = rng.standard_normal(5), rng.standard_normal(5)
        flat = target.flat_density()
        state = init(jnp.asarray(z), jnp.zeros(5), flat)
        new, delta = propose(state, jnp.asarray(v), jnp.asarray(step_size), flat,
                                integ.resolve_splitting(integrator), num_steps)
        z1, v1 = np_integrate(target.np_grad, z, v, step_size, num_steps, integrator)
        expected = (np_hamiltonian(target.np_log_likelihood, z1, v1)
                    - np_hamiltonian(target.np_log_likelihood, z, v))
        np.testing.assert_allclose(new.position, z1, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(new.momentum, v1, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(new.log_likelihood, target.np_log_likelihood(z1), rtol=1e-12)
        np.testing.assert_allclose(new.grad, target.np_grad(z1), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(float(delta), expected, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(min(1.0, math.exp(-float(delta))), min(1.0, math.exp(-expected)), rtol=1e-9)


def test_step_acceptance_matches_numpy_with_refresh_and_jitter_x64():
    """The kernel's step at a frozen step size: its acceptance probability is the NumPy one.

    The fresh momentum of each step is recovered without knowing the kernel's
    random numbers: after an acceptance the reversed trajectory from
    ``(z', -v')`` leads back to ``(z, -v)`` (and must reach ``z``: checked), after
    a rejection the flipped momentum is ``-v``.  The jittered step is read from
    ``integration_time``.  Then ``min(1, exp(-Delta H))`` is computed in NumPy
    from ``(z, v)`` with the full Hamiltonian.
    """
    num_steps, step_size, jitter = 4, 0.7, 0.3
    with jax.enable_x64(True):
        target = Logistic()
        flat = target.flat_density()
        z0 = np.random.default_rng(7).standard_normal(5)
        state = init(jnp.asarray(z0), jnp.zeros(5), flat)
        step = jax.jit(build_kernel(flat, num_steps=num_steps, step_size_jitter=jitter))
        params = SplitHMCParams(jnp.asarray(step_size))
        accept_probs, steps = [], []
        for key in jax.random.split(jax.random.key(3), 40):
            new, info = step(key, state, params)
            h = float(info.integration_time) / num_steps
            if bool(info.is_accepted):
                z_back, v_back = np_integrate(target.np_grad, np.asarray(new.position), -np.asarray(new.momentum),
                                              h, num_steps)
                np.testing.assert_allclose(z_back, z0, rtol=1e-10, atol=1e-10)
                v0 = -v_back
            else:
                np.testing.assert_array_equal(new.position, z0)
                v0 = -np.asarray(new.momentum)
            z1, v1 = np_integrate(target.np_grad, z0, v0, h, num_steps)
            delta = np_hamiltonian(target.np_log_likelihood, z1, v1) - np_hamiltonian(target.np_log_likelihood, z0, v0)
            np.testing.assert_allclose(float(info.delta_energy), delta, rtol=1e-8, atol=1e-10)
            np.testing.assert_allclose(float(info.accept_prob), min(1.0, math.exp(-delta)), rtol=1e-8, atol=1e-12)
            assert float(info.step_size) == step_size
            accept_probs.append(float(info.accept_prob))
            steps.append(h)
    accept_probs, steps = np.array(accept_probs), np.array(steps)
    assert np.all((steps >= step_size * (1 - jitter)) & (steps <= step_size * (1 + jitter)))
    assert np.ptp(steps) > 0.2 * step_size  # the jitter jitters
    assert np.sum(accept_probs < 0.99) >= 10  # the comparison is not all at acceptance 1


@pytest.mark.parametrize("integrator", ["strang", "mclachlan"])
def test_integrator_is_reversible_x64(integrator):
    """Integrate, flip the momentum, integrate again: back at the start to round-off."""
    with jax.enable_x64(True):
        target = Logistic()
        rng = np.random.default_rng(11)
        z0, v0 = jnp.asarray(rng.standard_normal(5)), jnp.asarray(rng.standard_normal(5))
        vg = jax.value_and_grad(target.log_likelihood)
        splitting = integ.resolve_splitting(integrator)
        out = integ.gaussian_split(splitting, vg, z0, v0, vg(z0)[1], 0.37, 9)
        back = integ.gaussian_split(splitting, vg, out.position, -out.momentum, out.grad, 0.37, 9)
        np.testing.assert_allclose(back.position, z0, rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(-back.momentum, v0, rtol=1e-10, atol=1e-10)
        # the energy error of the way back undoes that of the way out
        delta_out = -(out.log_likelihood - vg(z0)[0]) + out.kinetic_change
        delta_back = -(back.log_likelihood - out.log_likelihood) + back.kinetic_change
        np.testing.assert_allclose(float(delta_back), -float(delta_out), atol=1e-10)


# -- the prior alone: a quarter turn is an exact independent draw -------------------------------
def test_without_likelihood_the_integrator_is_an_exact_rotation_x64():
    with jax.enable_x64(True):
        rng = np.random.default_rng(12)
        z0, v0 = rng.standard_normal(7), rng.standard_normal(7)
        vg = jax.value_and_grad(lambda z: 0.0 * jnp.sum(z))
        for integrator, num_steps, h in (("strang", 6, math.pi / 12), ("mclachlan", 5, 0.3), ("strang", 1, 2.0)):
            out = integ.gaussian_split(integ.resolve_splitting(integrator), vg, jnp.asarray(z0), jnp.asarray(v0),
                                       jnp.zeros(7), h, num_steps)
            z1, v1 = np_rotate(z0, v0, num_steps * h)
            np.testing.assert_allclose(out.position, z1, rtol=1e-13, atol=1e-13)
            np.testing.assert_allclose(out.momentum, v1, rtol=1e-13, atol=1e-13)
            assert float(out.kinetic_change) == 0.0


@pytest.mark.parametrize("num_steps", [1, 6])
def test_without_likelihood_a_quarter_turn_is_accepted_and_exact_x64(num_steps):
    """l = 0: every iteration is accepted with probability exactly 1 and maps (z, v) to (v, -z).

    Without jitter the trajectory is a quarter turn, so the momentum after an
    iteration is minus the position before it (to round-off), and the
    positions are the fresh momenta: independent N(0, I) draws.  The step size
    stays at its cap, pi / 2 / num_steps, through the adaptation.
    """
    zero = Density(lambda z: 0.0 * jnp.sum(z["z"]), lambda z: -0.5 * jnp.sum(z["z"] ** 2))
    with jax.enable_x64(True):
        kernel = make_kernel("split_hmc", zero, {"num_steps": num_steps, "step_size_jitter": 0.0})
        draws, momenta, stats = _run(kernel, np.zeros((2, 4)), num_warmup=50, num_samples=1000)
        jittered = make_kernel("split_hmc", zero, {"num_steps": num_steps})
        _, _, jittered_stats = _run(jittered, np.zeros((2, 4)), num_warmup=50, num_samples=200)
    assert np.all(stats["accept_prob"] == 1.0) and np.all(jittered_stats["accept_prob"] == 1.0)
    np.testing.assert_allclose(stats["step_size"], math.pi / 2 / num_steps, rtol=1e-14)
    np.testing.assert_allclose(stats["integration_time"], math.pi / 2, rtol=1e-14)
    np.testing.assert_allclose(momenta[:, 1:], -draws[:, :-1], rtol=1e-12, atol=1e-12)
    # independent N(0, 1) draws: mean 0 and variance 1 within 4 standard errors, no lag-1 correlation
    flat = draws.reshape(-1)
    assert abs(flat.mean()) < 4 / math.sqrt(flat.size)
    assert abs(flat.var() - 1) < 4 * math.sqrt(2 / flat.size)
    lag1 = np.mean(draws[:, 1:] * draws[:, :-1])
    assert abs(lag1) < 4 / math.sqrt(draws[:, 1:].size)


# -- float32: the energy error carries no cancellation ------------------------------------------
def test_energy_error_in_float32_at_a_million_dimensions():
    """In float32 at d = 10^6 the energy error from the kicks is that of the computed map, to 2e-3 nat.

    The exact value is computed in float64 from the float32 start and end
    points with the full Hamiltonian.  The kicks' sum leaves out only the
    rotations' rounding, unbiased and independent per coordinate (about
    6e-8 sqrt(d) = 6e-5 nat per rotation here, 6 rotations), where the
    difference of float32 norms of about 10^6 is off by their spacing, 0.06
    each, or more (and the product form of the rotation, ``z cos t + v sin t``,
    drifts by about 0.03 nat per rotation: see ``integrators.rotate``).
    """
    dim, noise = 1_000_000, 0.15
    rng = np.random.default_rng(13)
    w = (rng.standard_normal(dim) / math.sqrt(dim)).astype(np.float32)

    def log_likelihood(z):  # one observation, 1.0, of w . z
        return -0.5 * (jnp.dot(jnp.asarray(w), z) - 1.0) ** 2 / noise**2

    flat = Density(log_likelihood, lambda z: log_likelihood(z) - 0.5 * z @ z).on_flat(lambda f: f)
    z = rng.standard_normal(dim).astype(np.float32)
    v = rng.standard_normal(dim).astype(np.float32)
    state = init(jnp.asarray(z), jnp.zeros(dim, jnp.float32), flat)
    new, delta = jax.jit(lambda s, m: propose(s, m, jnp.float32(math.pi / 12), flat, integ.STRANG, 6))(
        state, jnp.asarray(v))
    assert delta.dtype == jnp.float32 and new.position.dtype == jnp.float32

    def h64(z, v):
        z, v = z.astype(np.float64), v.astype(np.float64)
        return 0.5 * (w.astype(np.float64) @ z - 1.0) ** 2 / noise**2 + 0.5 * z @ z + 0.5 * v @ v

    exact = h64(np.asarray(new.position), np.asarray(new.momentum)) - h64(z, v)
    assert abs(exact) > 0.005  # the kicks did something
    assert abs(float(delta) - exact) < 2e-3, (float(delta), exact)


# -- cost, failures, options ----------------------------------------------------------------------
def _counting_density(counts):
    """l(z) = -0.1 sum z^4 that counts its evaluations and gradients on the host."""

    def bump(kind):
        def fn():
            counts[kind] += 1
        return fn

    @jax.custom_vjp
    def log_likelihood(z):
        jax.debug.callback(bump("value"))
        return -0.1 * jnp.sum(z["z"] ** 4)

    def fwd(z):
        return log_likelihood(z), z

    def bwd(z, g):
        jax.debug.callback(bump("grad"))
        return ({"z": -0.4 * g * z["z"] ** 3},)

    log_likelihood.defvjp(fwd, bwd)
    return Density(log_likelihood, lambda z: log_likelihood(z) - 0.5 * jnp.sum(z["z"] ** 2))


@pytest.mark.parametrize("options, grads_per_iteration", [
    ({}, 6), ({"num_steps": 3}, 3), ({"num_steps": 3, "integrator": "mclachlan"}, 6),
    ({"num_steps": 1, "momentum_refresh": 0.1}, 1)])
def test_reported_costs_match_actual_evaluations(options, grads_per_iteration):
    counts = {"value": 0, "grad": 0}
    kernel = make_kernel("split_hmc", _counting_density(counts), options)
    stats_fn = get_kernel("split_hmc").stats_fn
    state = kernel.init(jax.random.key(0), 5, {"z": jnp.ones(3)}, (), {})
    step = jax.jit(lambda s: (lambda t: (t, stats_fn(t)))(kernel.sample(s, (), {})))
    jax.effects_barrier()
    counts.update(value=0, grad=0)  # the step-size search at init is not an iteration
    grads = evals = 0
    for _ in range(8):
        state, stats = step(state)
        grads += int(stats["num_grad_evals"])
        evals += int(stats["num_logdensity_evals"])
    jax.effects_barrier()
    assert grads == counts["grad"] == 8 * grads_per_iteration
    assert evals == counts["value"] == grads


def test_failed_density_is_counted_as_nonfinite_not_a_crash():
    """NaN beyond z_0 > 0.5 (a failed factorisation): never accepted, counted in nonfinite, not diverging."""

    def log_likelihood(z):
        return jnp.where(z["z"][0] > 0.5, jnp.nan, 0.0)

    density = Density(log_likelihood, lambda z: log_likelihood(z) - 0.5 * jnp.sum(z["z"] ** 2))
    draws, _, stats = _run(make_kernel("split_hmc", density, {}), np.zeros((2, 2)), num_warmup=50, num_samples=200)
    assert np.all(np.isfinite(draws)) and np.all(draws[..., 0] <= 0.5)
    assert np.all(np.isfinite(stats["lp"]))
    assert np.any(stats["nonfinite"]) and np.any(stats["accept_prob"] > 0)  # it still moves
    assert not np.any(stats["diverging"])


def test_registered_with_options_validated_before_tracing():
    assert "split_hmc" in kernel_names()
    assert get_kernel("split_hmc").options == (
        "num_steps", "step_size", "integration_time", "step_size_jitter", "momentum_refresh", "target_accept_prob",
        "adapt_step_size", "max_delta_energy", "integrator")
    potential = lambda z: 0.0  # noqa: E731
    bad = [({"num_steps": 0}, "num_steps"), ({"step_size": 0.5, "integration_time": 1.0}, "step_size"),
           ({"step_size": -1.0}, "step_size"), ({"integration_time": 0.0}, "integration_time"),
           ({"step_size_jitter": 1.0}, "step_size_jitter"), ({"momentum_refresh": 0.0}, "momentum_refresh"),
           ({"target_accept_prob": 1.0}, "target_accept_prob"), ({"integrator": "leapfrog"}, "integrator"),
           ({"integrator": integ.GaussianSplitting("lopsided", (0.3, 0.7), (1.0,))}, "integrator"),
           ({"adapt_step_size": 1}, "adapt_step_size"),
           ({"num_steps": 1, "integration_time": 3.0}, "step_size")]  # 3 x 1.2 jittered: past half a turn
    for options, name in bad:
        with pytest.raises(ValueError, match=name):
            make_kernel("split_hmc", potential, options)
    # a step size alone sets the integration time; both together must agree with num_steps
    make_kernel("split_hmc", potential, {"step_size": 0.5})  # integration time 6 x 0.5 = 3
    make_kernel("split_hmc", potential, {"step_size": 0.5, "integration_time": 3.0})


def test_step_size_is_capped_at_the_integration_time_x64():
    """With a weak likelihood the adapted step stops at integration_time / num_steps (here a quarter turn)."""
    target = Conjugate(num_data=1, noise_std=10.0)  # nearly the prior: acceptance near 1 at any step
    with jax.enable_x64(True):
        _, _, stats = _run(make_kernel("split_hmc", target.density, {"num_steps": 4}),
                           target.exact_draws(2, seed=2), num_warmup=200, num_samples=50)
    np.testing.assert_allclose(stats["step_size"], math.pi / 8, rtol=1e-12)
    assert np.all(stats["step_size"] == stats["step_size"][:, :1])  # frozen after warm-up


def test_runs_under_numpyro_mcmc():
    """Vectorised chains, extra_fields and arviz.from_numpyro work as for NUTS."""
    target = Conjugate(dim=2)
    mcmc = MCMC(make_kernel("split_hmc", target.density, {}), num_warmup=50, num_samples=100, num_chains=2,
                chain_method="vectorized", progress_bar=False)
    mcmc.run(jax.random.key(0), init_params={"z": jnp.zeros((2, 2))}, extra_fields=("potential_energy",))
    assert mcmc.get_samples()["z"].shape == (200, 2)
    assert mcmc.get_extra_fields()["potential_energy"].shape == (200,)
    assert az.from_numpyro(mcmc).posterior["z"].shape == (2, 100, 2)


# -- reprior.sample: every parameterisation, readout and dtype ------------------------------------
# 20 draws of 2 chains say nothing of R-hat: its warning is not the subject here
@pytest.mark.filterwarnings("ignore:reprior.sample.*R-hat:RuntimeWarning")
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("parameterisation, readout", [("standard", "exact"), ("reprior", "exact"),
                                                       ("reprior", "sampled")])
def test_reprior_sample_runs_in_every_setting(parameterisation, readout, dtype):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 2))
    y = np.sin(x[:, :1]) + 0.1 * rng.standard_normal((6, 1))
    bnn = reprior.BNN(reprior.MLP(width=4), noise_std=0.3)
    num_warmup, num_samples, num_chains, num_steps = 30, 20, 2, 3
    idata = reprior.sample(bnn, x, y, x_test=x[:2], parameterisation=parameterisation, readout=readout,
                           sampler="split_hmc", sampler_options={"num_steps": num_steps}, num_warmup=num_warmup,
                           num_samples=num_samples, num_chains=num_chains, chain_method="vectorized", dtype=dtype,
                           progress_bar=False)
    stats, warm = idata.sample_stats, idata.warmup_sample_stats
    assert idata.posterior_predictive["f_test"].dtype == np.dtype(dtype)
    assert np.all(np.isfinite(idata.posterior_predictive["f_test"])) and np.all(np.isfinite(stats["lp"]))
    for group in (stats, warm):
        for field in ("num_grad_evals", "num_logdensity_evals"):
            assert np.all(group[field].values == num_steps), field
    iterations = num_chains * (num_warmup + num_samples)
    assert idata.attrs["grad_evals"] == idata.attrs["logdensity_evals"] == iterations * num_steps
    assert float(stats["accept_prob"].mean()) > 0.3
    assert int(stats["nonfinite"].sum()) == 0


# -- agreement with NUTS and with an exact reference on a small BNN ------------------------------
BNN_SMALL = reprior.BNN(reprior.MLP(width=8, depth=1), noise_std=0.3)


@pytest.fixture(scope="module")
def small_bnn_runs():
    data = reprior.experiments.data.load_dataset("synthetic", n_train=16, n_test=4, seed=0, in_dim=2)
    runs = {}
    for sampler in ("split_hmc", "nuts"):
        runs[sampler] = reprior.sample(BNN_SMALL, data.x_train, data.y_train, x_test=data.x_test, sampler=sampler,
                                       num_warmup=300, num_samples=500, num_chains=4, chain_method="vectorized",
                                       progress_bar=False, dtype="float64", seed=1)
    return data, runs


def test_split_hmc_agrees_with_nuts_on_a_small_bnn(small_bnn_runs):
    """Posterior means of the test predictions within 4 combined MCSEs, sampled by split HMC and by NUTS.

    Both repriorised with the readout drawn exactly.  Each of the 4 test points
    is one check at 6e-5; the tolerance must also be small against the
    posterior sd (a test with teeth), and both runs must have mixed.
    """
    _, runs = small_bnn_runs
    ours, nuts = predictive_moments(runs["split_hmc"]), predictive_moments(runs["nuts"])
    for moments in (ours, nuts):
        assert np.all(moments["rhat"] < 1.02) and np.all(moments["ess"] > 400)
    tol = 4 * np.hypot(ours["mean_se"], nuts["mean_se"])
    assert np.all(tol < 0.2 * nuts["sd"])
    diff = np.abs(ours["mean"] - nuts["mean"])
    assert np.all(diff < tol), (diff, tol)
    assert runs["split_hmc"].attrs["failed"] == ""


def test_split_hmc_agrees_with_importance_sampling_on_a_small_bnn(small_bnn_runs):
    """The same posterior means against the exact predictive by importance sampling from the prior."""
    data, runs = small_bnn_runs
    ours = predictive_moments(runs["split_hmc"])
    ref = importance_sampling_predictive(BNN_SMALL, data.x_train, data.y_train, data.x_test)
    assert ref["ess"] > 2000
    tol = 4 * np.hypot(ours["mean_se"], ref["mean_se"])
    assert np.all(np.abs(ours["mean"] - ref["mean"]) < tol)


# -- simulation-based calibration -----------------------------------------------------------------
def test_small_sbc_passes_and_rejects_a_wrong_sampler():
    """Ranks of the truth among thinned split-HMC draws are uniform; a wrong likelihood is rejected.

    Repriorised, readout exact, 200 replications of 19 draws, level 0.001
    family-wise (Bonferroni over the 7 summaries; the reasons are in
    tests/test_sbc.py).  Thinning 2 keeps every summary's lag-1 autocorrelation
    under 0.2 (checked): near-independent draws, as the ranks need.  The wrong
    sampler targets half the true noise std (a posterior too narrow), and reuses
    the executable.
    """
    settings = dict(sampler="split_hmc", thinning=2, num_replications=200, num_draws=19, num_bins=10,
                    num_warmup=200, level=0.001)
    right = sbc.run_sbc(**settings)
    assert right.passed, right.table()
    assert right.num_divergences == 0
    assert np.all(np.abs(right.autocorrelation) < 0.2), right.table()
    wrong = sbc.run_sbc(sampler_noise_std=0.25, **settings)
    assert not wrong.passed
    assert wrong.p_values[sbc.SUMMARY_NAMES.index("log_likelihood")] < 1e-10
