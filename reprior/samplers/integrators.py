"""Symplectic integrators on flat arrays, passed to the gradient-based kernels.

An integrator has the signature

``integrator(value_and_grad_fn, position, momentum, grad, step_size, num_steps)
-> (position, momentum, value, grad)``

where ``value_and_grad_fn(position) -> (value, grad)`` returns any scalar the
kernel tracks (here the log likelihood) and the gradient of the log density
(the force, identity mass).  ``grad`` is the cached force at ``position``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def velocity_verlet(value_and_grad_fn, position, momentum, grad, step_size, num_steps: int):
    """``num_steps`` leapfrog (velocity Verlet) steps for :math:`H = -\\log\\pi(z) + \\tfrac12|m|^2`.

    .. math::

        m_{1/2} = m + \\tfrac{\\epsilon}{2}\\nabla\\log\\pi(z), \\quad
        z' = z + \\epsilon\\, m_{1/2}, \\quad
        m' = m_{1/2} + \\tfrac{\\epsilon}{2}\\nabla\\log\\pi(z'),

    second order, symplectic and reversible (Leimkuhler and Reich 2004, section 2.3).
    One gradient evaluation per step (the force at the start is cached).
    """

    def step(carry, _):
        z, m, _, g = carry
        m = m + 0.5 * step_size * g
        z = z + step_size * m
        value, g = value_and_grad_fn(z)
        m = m + 0.5 * step_size * g
        return (z, m, value, g), None

    carry = (position, momentum, jnp.zeros((), position.dtype), grad)
    if num_steps == 1:  # the default of underdamped HMC: no loop, which also compiles faster
        carry, _ = step(carry, None)
    else:
        carry, _ = jax.lax.scan(step, carry, None, length=num_steps)
    return carry


#: Gradient evaluations per step of each integrator (for the cost counts).
GRADS_PER_STEP = {velocity_verlet: 1}

#: Integrators by name (the CLI's ``--sampler-option integrator=velocity_verlet``).
INTEGRATORS = {"velocity_verlet": velocity_verlet}


def resolve(integrator):
    """An integrator given as itself or by name."""
    if isinstance(integrator, str) and integrator in INTEGRATORS:
        return INTEGRATORS[integrator]
    if callable(integrator) and not isinstance(integrator, str):
        return integrator
    from .. import _checks

    raise _checks.fail("integrator", f"one of {sorted(INTEGRATORS)} or an integrator function", integrator)
