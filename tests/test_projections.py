"""Fixed random projections: pinned directions, unit norm, blockwise == full product, bounded memory."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.extend import core as jex_core
from jax.flatten_util import ravel_pytree

from reprior.core.projections import DEFAULT_BLOCK_SIZE, project, project_tree, projection_matrix


def test_directions_are_pinned():
    # Known answers: the directions (hence every recorded theta_proj/phi_proj) must not change
    # between machines, devices, NumPy or JAX versions.  Changing the hash changes these numbers.
    signs = np.sqrt(5) * projection_matrix(5, 3, 0)
    np.testing.assert_array_equal(signs, [[1, 1, -1], [1, -1, -1], [-1, -1, -1], [-1, -1, -1], [1, 1, -1]])
    rows = np.rint(projection_matrix(1000, 3, 12345)[-4:] * math.sqrt(1000))
    np.testing.assert_array_equal(rows, [[1, -1, 1], [-1, 1, 1], [1, 1, 1], [-1, -1, -1]])


@pytest.mark.parametrize("dim", [1, 2, 7, 1000])
@pytest.mark.parametrize("num", [1, 10, 33])
def test_directions_are_unit_norm_signs(dim, num):
    p = projection_matrix(dim, num, 3)
    assert p.shape == (dim, num) and p.dtype == np.float64
    np.testing.assert_allclose(np.abs(p), 1 / math.sqrt(dim), rtol=1e-15)
    np.testing.assert_allclose(np.linalg.norm(p, axis=0), 1.0, rtol=1e-14)


def test_directions_depend_on_seed_and_not_on_num():
    p = projection_matrix(300, 40, 7)
    np.testing.assert_array_equal(projection_matrix(300, 5, 7), p[:, :5])
    assert not np.array_equal(projection_matrix(300, 40, 8), p)


def test_directions_look_independent():
    # Independent +-1 signs: every statistic below is ~N(0, 1), so |z| < 5 fails with probability ~1e-6.
    dim, num = 4096, 64  # two hash words per row
    s = np.sqrt(dim) * projection_matrix(dim, num, 0)
    other = np.sqrt(dim) * projection_matrix(dim, num, 1)
    assert abs(s.sum()) / math.sqrt(dim * num) < 5  # balance
    assert abs((s[1:] * s[:-1]).sum()) / math.sqrt((dim - 1) * num) < 5  # neighbouring rows
    assert abs((s[:, 1:] * s[:, :-1]).sum()) / math.sqrt(dim * (num - 1)) < 5  # neighbouring directions
    # Gram matrices: off-diagonal entries / sqrt(dim) have variance 1; 2016 (4096) entries give a
    # sample variance with sd 0.03 (0.02), so [0.8, 1.2] is a > 6 sd band.
    gram = s.T @ s / math.sqrt(dim)
    assert 0.8 < np.var(gram[np.triu_indices(num, 1)]) < 1.2
    assert 0.8 < np.var(s.T @ other / math.sqrt(dim)) < 1.2


_SHAPES = [(1, 4), (7, 4), (1000, 64), (1000, 1000), (1000, 999), (5000, DEFAULT_BLOCK_SIZE)]  # (dim, block_size)


@pytest.mark.parametrize("x64", [False, True])
@pytest.mark.parametrize("dim,block_size,jit", [(*shape, True) for shape in _SHAPES] + [(1000, 64, False)])
def test_project_equals_full_product(dim, block_size, jit, x64):
    x = np.random.default_rng(dim).standard_normal(dim)
    expected = x @ projection_matrix(dim, 12, 5)  # float64 NumPy reference
    with jax.enable_x64(x64):
        fn = lambda v: project(v, 12, 5, block_size=block_size)  # noqa: E731
        out = (jax.jit(fn) if jit else fn)(jnp.asarray(x))
        assert out.shape == (12,) and out.dtype == (jnp.float64 if x64 else jnp.float32)
    # float32: sums of `dim` terms of size ~1/sqrt(dim), rounding ~ sqrt(dim) * 6e-8 relative to O(1) results.
    np.testing.assert_allclose(np.asarray(out), expected, rtol=0, atol=1e-12 if x64 else 1e-5)


def test_project_tree_equals_projection_of_the_raveled_tree():
    rng = np.random.default_rng(1)
    tree = {"hidden": [{"W": rng.standard_normal((13, 5)), "b": rng.standard_normal(5)}],
            "readout": {"W": rng.standard_normal((6, 2)), "b": rng.standard_normal(())},
            "empty": np.zeros((0, 3))}
    with jax.enable_x64(True):
        jtree = jax.tree_util.tree_map(jnp.asarray, tree)
        flat = np.asarray(ravel_pytree(jtree)[0])
        expected = flat @ projection_matrix(flat.size, 10, 2)
        for block_size in (3, 16, DEFAULT_BLOCK_SIZE):  # blocks that cross and do not cross leaves
            out = jax.jit(lambda t, b=block_size: project_tree(t, 10, 2, block_size=b))(jtree)
            np.testing.assert_allclose(np.asarray(out), expected, rtol=0, atol=1e-12)


def test_project_under_vmap_matches_each_vector():
    x = np.random.default_rng(2).standard_normal((3, 200))
    with jax.enable_x64(True):
        out = jax.vmap(lambda v: project(v, 4, 0, block_size=32))(jnp.asarray(x))
    np.testing.assert_allclose(np.asarray(out), x @ projection_matrix(200, 4, 0), rtol=0, atol=1e-12)


def test_zero_directions_or_dimensions():
    assert project(jnp.ones(5), 0).shape == (0,)
    assert project(jnp.ones(0), 3).shape == (3,) and projection_matrix(0, 3).shape == (0, 3)


def _largest_intermediate(jaxpr) -> int:
    """Largest number of elements of any value in a jaxpr, nested jaxprs (scan bodies) included."""
    sizes = [0]
    for eqn in jaxpr.eqns:
        sizes += [math.prod(v.aval.shape) for v in eqn.outvars]
        for param in eqn.params.values():
            for sub in param if isinstance(param, (list, tuple)) else [param]:
                if isinstance(sub, jex_core.ClosedJaxpr):
                    sizes.append(_largest_intermediate(sub.jaxpr))
                elif isinstance(sub, jex_core.Jaxpr):
                    sizes.append(_largest_intermediate(sub))
    return max(sizes)


def test_memory_is_linear_in_dim():
    dim, num, block_size = 2**16 + 3, 10, 2**10
    x = jnp.ones(dim, jnp.float32)
    fn = lambda v: project(v, num, 1, block_size=block_size)  # noqa: E731
    # No traced value holds more than the padded input or one block of directions ...
    padded = -(-dim // block_size) * block_size
    assert _largest_intermediate(jax.make_jaxpr(fn)(x).jaxpr) <= max(padded, block_size * num)
    # ... and the compiled program's scratch memory is O(dim), far below the dim * num matrix.
    stats = jax.jit(fn).lower(x).compile().memory_analysis()
    if stats is None:
        pytest.skip("this backend reports no memory analysis")
    assert stats.temp_size_in_bytes <= 2 * padded * 4 + 4 * block_size * num * 4 < dim * num * 4 / 2


@pytest.mark.parametrize("kwargs,match", [
    (dict(flat=np.ones((2, 3)), num=2), "argument `flat`: expected a 1-D floating array"),
    (dict(flat=np.ones(3, np.int32), num=2), "argument `flat`: expected a 1-D floating array"),
    (dict(flat=np.ones(3), num=-1), "argument `num`: expected an integer >= 0"),
    (dict(flat=np.ones(3), num=2, seed=2**32), r"argument `seed`: expected an integer in \[0, 4294967295\]"),
    (dict(flat=np.ones(3), num=True), "argument `num`: expected"),
    (dict(flat=np.ones(3), num=2, block_size=0), "argument `block_size`: expected an integer >= 1"),
])
def test_project_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        project(**kwargs)


def test_project_tree_rejects_empty_or_integer_trees():
    with pytest.raises(ValueError, match="at least one array leaf"):
        project_tree({}, 3)
    with pytest.raises(ValueError, match="argument `tree`: expected a pytree of floating leaves"):
        project_tree({"a": np.ones(3, np.int32)}, 3)


def test_project_leaves_with_or_without_the_words_table_is_project_tree():
    from reprior.core.projections import project_leaves, project_tree, projection_words

    rng = np.random.default_rng(5)
    tree = {"a": jnp.asarray(rng.normal(size=(7, 3))), "b": jnp.asarray(rng.normal(size=(40,)))}
    leaves = jax.tree_util.tree_leaves(tree)
    words = projection_words(61, 40, 3)  # 40 directions: two words per weight
    assert words.shape == (61, 2) and words.dtype == np.uint32
    for table in (None, words):
        head, offset = project_leaves(leaves[:1], 40, 3, words=table, block_size=8)  # scanned in blocks
        tail, end = project_leaves(leaves[1:], 40, 3, offset=offset, words=table, block_size=8)
        assert (offset, end) == (21, 61)
        # float32 (x64 off here): equal to its rounding of a sum of 61 terms
        np.testing.assert_allclose((head + tail) / math.sqrt(61), project_tree(tree, 40, 3), rtol=1e-5, atol=1e-6)
