"""The maths core: pure JAX functions of weights and data.

Architectures (the features ``Psi`` and their NNGP recursions), the repriorisation transform and its
exact ``n x n`` identities, the one sampling target, the BNN densities, the NNGP kernels, fixed random
projections and pytree helpers.  It imports only :mod:`reprior._util`; never NumPyro, ArviZ or
matplotlib.
"""
