"""The user's own network: FeatureArchitecture, the Flax NNX and Equinox adapters, and --arch MODULE:CALLABLE.

The checks are identities: a FeatureArchitecture of the MLP's own functions has
the MLP's log densities, and a Flax or Equinox network built from stock layers
with the MLP's (or the example CNN's) weights has its features, to round-off.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from cli_helpers import one_line_error, run

import reprior
from reprior.core import nngp
from reprior.core.architectures import FeatureArchitecture, registry
from reprior.experiments.runner import grid

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "docs" / "examples"


def data(n=10, in_dim=3, out_dim=2, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, in_dim)), rng.standard_normal((n, out_dim))


def mlp_copy(mlp, **kwargs):
    return FeatureArchitecture(init=mlp.init_hidden, features=mlp.hidden_features, name="mlp-copy", **kwargs)


def load_example(name: str):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------------------
# FeatureArchitecture
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("parameterisation", ["standard", "reprior"])
def test_the_mlps_own_functions_give_the_mlps_log_density(parameterisation):
    with jax.enable_x64(True):
        x, y = data()
        mlp = reprior.MLP(width=16, depth=2, activation="erf")
        arch = mlp_copy(mlp)
        params = mlp.init(jax.random.key(0), x, 2)
        ours, theirs = reprior.BNN(arch, 0.3), reprior.BNN(mlp, 0.3)
        assert arch.feature_dim(x.shape) == 16
        assert jax.tree_util.tree_map(lambda s: s.shape, ours.param_shapes(x.shape, 2)) == \
            jax.tree_util.tree_map(lambda s: s.shape, theirs.param_shapes(x.shape, 2))
        np.testing.assert_allclose(ours.log_density(params, x, y, parameterisation),
                                   theirs.log_density(params, x, y, parameterisation), rtol=1e-13)
        np.testing.assert_allclose(ours.collapsed_log_density(params["hidden"], x, y),
                                   theirs.collapsed_log_density(params["hidden"], x, y), rtol=1e-13)


def test_first_use_inside_jit_checks_shapes_and_gives_the_mlps_density():
    """A fresh architecture first seen under jit (data closed over): shapes are checked, the density is the MLP's."""
    with jax.enable_x64(True):
        x, y = data()
        mlp = reprior.MLP(width=8)
        params = mlp.init(jax.random.key(2), x, 2)
        ours = jax.jit(lambda p: reprior.BNN(mlp_copy(mlp), 0.3).log_density(p, x, y, "reprior"))(params)
        np.testing.assert_allclose(ours, reprior.BNN(mlp, 0.3).log_density(params, x, y, "reprior"), rtol=1e-13)
        bad = _bad(features=lambda h, x: (x @ h["W"])[:, :, None])
        with pytest.raises(ValueError, match="`features`: expected an array of shape"):
            jax.jit(lambda x: reprior.BNN(bad, 0.3).check_data(x)[0])(x)


def test_reprior_draws_every_hidden_leaf_from_the_structure_of_init():
    """init's values are not used: the leaves are jax.random.normal of the split key, in tree order."""
    with jax.enable_x64(True):
        x, _ = data()
        arch = FeatureArchitecture(init=lambda key, x: {"a": jnp.ones((3, 4)), "b": [jnp.ones(4)]},
                                   features=lambda h, x: jnp.tanh(x @ h["a"] + h["b"][0]), name="ones")
        hidden = arch.init(jax.random.key(7), x, 1)["hidden"]
        hidden_key = jax.random.split(jax.random.key(7), 3)[0]
        keys = jax.random.split(hidden_key, 2)
        np.testing.assert_array_equal(hidden["a"], jax.random.normal(keys[0], (3, 4)))
        np.testing.assert_array_equal(hidden["b"][0], jax.random.normal(keys[1], (4,)))


def test_repr_replace_equality_and_recorded_settings():
    mlp = reprior.MLP(width=8)
    arch = mlp_copy(mlp, width=8, settings={"activation": "relu"})
    assert repr(arch) == ("FeatureArchitecture(name='mlp-copy', init=reprior.core.architectures.mlp.MLP.init_hidden, "
                          "features=reprior.core.architectures.mlp.MLP.hidden_features, width=8, "
                          "settings={'activation': 'relu'}, out_w_std=1.0, out_b_std=0.1)")
    wide = dataclasses.replace(arch, width=1)
    assert wide.width == 1 and wide.features_fn == mlp.hidden_features and wide != arch
    assert arch == mlp_copy(mlp, width=8, settings=(("activation", "relu"),)) and hash(arch) == hash(
        mlp_copy(mlp, width=8, settings={"activation": "relu"}))


def _bad(init=None, features=None):
    return FeatureArchitecture(init=init or (lambda key, x: {"W": jnp.zeros((x.shape[1], 5))}),
                               features=features or (lambda h, x: x @ h["W"]), name="bad-net")


BAD = {
    "rank 3": (_bad(features=lambda h, x: (x @ h["W"])[:, :, None]),
               ["`features`", "'bad-net'", "(n, d) = (10, d)", "(10, 5, 1)", "flatten"]),
    "rows": (_bad(features=lambda h, x: (x @ h["W"])[:3]), ["`features`", "(10, d)", "(3, 5)"]),
    "non-finite": (_bad(features=lambda h, x: jnp.log(x @ h["W"])), ["`features`", "finite", "non-finite"]),
    "integer leaf": (_bad(init=lambda key, x: {"W": jnp.zeros((3, 5)), "n": jnp.arange(3)}),
                     ["`init`", "floating", "hidden['n']"]),
    "python leaf": (_bad(init=lambda key, x: {"W": jnp.zeros((3, 5)), "depth": 2}),
                    ["`init`", "floating", "hidden['depth']"]),
    "float32 leaf": (_bad(init=lambda key, x: {"W": jnp.zeros((3, 5), jnp.float32)}),
                     ["`init`", "float64", "float32"]),
    "no leaves": (_bad(init=lambda key, x: {}), ["`init`", "at least one array leaf"]),
    "raises": (_bad(features=lambda h, x: x @ h["W"].T), ["`features`", "raised TypeError"]),
    "integer features": (_bad(features=lambda h, x: (x @ h["W"]).astype(int)), ["`features`", "floating"]),
}


@pytest.mark.parametrize("arch, fragments", list(BAD.values()), ids=list(BAD))
def test_bad_feature_functions_are_refused_before_sampling(arch, fragments):
    with jax.enable_x64(True):
        x, y = data()
        with pytest.raises(ValueError) as info:
            reprior.BNN(arch, 0.1).check_data(x, y)
        for fragment in fragments:
            assert fragment in str(info.value), str(info.value)


def test_bad_arguments_are_refused_at_construction():
    with pytest.raises(ValueError, match="`init`: expected a function"):
        FeatureArchitecture(init=3, features=lambda h, x: x, name="n")
    with pytest.raises(ValueError, match="`name`: expected a non-empty string"):
        FeatureArchitecture(init=lambda k, x: x, features=lambda h, x: x, name="")
    with pytest.raises(ValueError, match="`width`: expected a non-negative integer"):
        FeatureArchitecture(init=lambda k, x: x, features=lambda h, x: x, name="n", width=-1)
    with pytest.raises(ValueError, match="`x`: expected inputs of shape \\(n, ...\\)"):
        mlp_copy(reprior.MLP(4)).check_inputs(np.zeros(3))


def test_numpyro_model_and_nngp_take_a_feature_architecture():
    import numpyro  # noqa: F401
    from numpyro.infer.util import potential_energy

    from reprior.inference.models import flatten_params

    with jax.enable_x64(True):
        x, y = data()
        bnn = reprior.BNN(mlp_copy(reprior.MLP(width=8)), 0.3)
        params = bnn.init(jax.random.key(1), x, 2)
        sites = {k: v for k, v in flatten_params(params).items() if k.startswith("hidden")}
        energy = potential_energy(reprior.bnn_model, (bnn, x, y), {"parameterisation": "reprior", "readout": "exact"},
                                  sites)
        np.testing.assert_allclose(energy, -bnn.collapsed_log_density(params["hidden"], x, y), rtol=1e-12)
        if hasattr(nngp, "has_closed_form_kernel"):
            assert not nngp.has_closed_form_kernel(bnn.arch)
        else:
            with pytest.raises(NotImplementedError, match="FeatureArchitecture"):
                nngp.nngp_kernel(bnn.arch, x)


def test_sample_runs_on_a_feature_architecture():
    """reprior.sample end to end (its density is the MLP's, above): draws, names and provenance."""
    with jax.enable_x64(True):
        x, y = data(n=8)
        bnn = reprior.BNN(mlp_copy(reprior.MLP(width=6)), 0.3)
        idata = reprior.sample(bnn, x, y, x_test=x[:2], sampler="pcn", num_warmup=5, num_samples=5, num_chains=1,
                               progress_bar=False)
        assert idata.posterior["hidden_0_W"].shape == (1, 5, 3, 6)
        assert idata.attrs["arch_repr"] == repr(bnn.arch)


# ---------------------------------------------------------------------------
# Flax NNX and Equinox
# ---------------------------------------------------------------------------


def mlp_weights(mlp, x):
    return mlp.init(jax.random.key(3), x, 1)["hidden"]


def test_a_flax_mlp_with_the_mlps_weights_has_its_features():
    nnx = pytest.importorskip("flax.nnx")

    class Net(nnx.Module):
        def __init__(self, din, width, rngs):
            self.first = nnx.Linear(din, width, rngs=rngs)
            self.second = nnx.Linear(width, width, rngs=rngs)

        def __call__(self, x):
            return jax.nn.relu(self.second(jax.nn.relu(self.first(x))))

    with jax.enable_x64(True):
        x, y = data()
        mlp = reprior.MLP(width=16, depth=2)
        arch = reprior.from_flax(Net(3, 16, nnx.Rngs(0)), scales="fan_in")
        h = mlp_weights(mlp, x)
        hidden = {"first_kernel": h[0]["W"], "first_bias": h[0]["b"], "second_kernel": h[1]["W"],
                  "second_bias": h[1]["b"]}
        assert jax.tree_util.tree_map(lambda s: s.shape, arch.init(jax.random.key(0), x, 1)["hidden"]) == \
            jax.tree_util.tree_map(jnp.shape, hidden)
        np.testing.assert_allclose(arch.hidden_features(hidden, x), mlp.hidden_features(h, x), rtol=1e-13, atol=1e-14)
        # scales: a dict for some parameters (the others 1), or a function of name and shape
        half = reprior.from_flax(Net(3, 16, nnx.Rngs(0)), scales={"first_kernel": 0.5})
        np.testing.assert_allclose(half.hidden_features({**hidden, "first_kernel": 2 * hidden["first_kernel"]}, x),
                                   reprior.from_flax(Net(3, 16, nnx.Rngs(0)), scales=1.0).hidden_features(hidden, x),
                                   rtol=1e-13)
        with pytest.raises(ValueError, match=r"`scales`: expected parameter names among .*'nope'"):
            reprior.from_flax(Net(3, 16, nnx.Rngs(0)), scales={"nope": 1.0})
        with pytest.raises(ValueError, match="`module`: expected a flax.nnx.Module"):
            reprior.from_flax(lambda x: x)


def test_an_equinox_mlp_with_the_mlps_weights_has_its_features():
    eqx = pytest.importorskip("equinox")

    class Net(eqx.Module):
        layers: list

        def __init__(self, din, width, key):
            k1, k2 = jax.random.split(key)
            self.layers = [eqx.nn.Linear(din, width, key=k1), eqx.nn.Linear(width, width, key=k2)]

        def __call__(self, x):
            for layer in self.layers:
                x = jax.nn.relu(layer(x))
            return x

    with jax.enable_x64(True):
        x, y = data()
        mlp = reprior.MLP(width=16, depth=2)
        arch = reprior.from_equinox(Net(3, 16, jax.random.key(0)), scales="fan_in")
        h = mlp_weights(mlp, x)
        hidden = {"layers_0_weight": h[0]["W"].T, "layers_0_bias": h[0]["b"], "layers_1_weight": h[1]["W"].T,
                  "layers_1_bias": h[1]["b"]}
        np.testing.assert_allclose(arch.hidden_features(hidden, x), mlp.hidden_features(h, x), rtol=1e-13, atol=1e-14)
        params = {"hidden": hidden, "readout": mlp.init(jax.random.key(4), x, 2)["readout"]}
        np.testing.assert_allclose(reprior.BNN(arch, 0.2).log_density(params, x, y, "reprior"),
                                   reprior.BNN(mlp, 0.2).log_density({**params, "hidden": h}, x, y, "reprior"),
                                   rtol=1e-12)


def test_the_flax_and_equinox_cnns_of_the_docs_equal_the_plain_jax_cnn():
    pytest.importorskip("flax.nnx")
    pytest.importorskip("equinox")
    cnn, flax_cnn, equinox_cnn = (load_example(n) for n in ("cnn", "flax_cnn", "equinox_cnn"))
    with jax.enable_x64(True):
        x = jnp.asarray(np.random.default_rng(0).standard_normal((4, 8, 8, 1)))
        plain = cnn.make_arch(width=6, depth=2)
        h = plain.init(jax.random.key(0), x, 1)["hidden"]
        expected = plain.hidden_features(h, x)
        as_flax = {f"convs_{i}_{k}": v for i, layer in enumerate(h) for k, v in
                   (("kernel", layer["W"]), ("bias", layer["b"]))}
        np.testing.assert_allclose(flax_cnn.make_arch(6, 2).hidden_features(as_flax, x), expected, rtol=1e-12)
        as_eqx = {f"convs_{i}_{k}": v for i, layer in enumerate(h) for k, v in
                  (("weight", jnp.transpose(layer["W"], (3, 2, 0, 1))), ("bias", layer["b"][:, None, None]))}
        np.testing.assert_allclose(equinox_cnn.make_arch(6, 2).hidden_features(as_eqx, x), expected, rtol=1e-12)


# ---------------------------------------------------------------------------
# MODULE:CALLABLE and entry points
# ---------------------------------------------------------------------------

USER_MODULE = '''
import jax, jax.numpy as jnp
import reprior

def make_arch(width, depth=1):
    mlp = reprior.MLP(width=width, depth=depth)
    return reprior.FeatureArchitecture(init=mlp.init_hidden, features=mlp.hidden_features, name="user-mlp")

def fixed_width(width):
    mlp = reprior.MLP(width=5)
    return reprior.FeatureArchitecture(init=mlp.init_hidden, features=mlp.hidden_features, name="fixed")

def not_an_arch(width):
    return "mlp"

def wrong_width(width):
    return reprior.MLP(width=width + 1)

def needs_more(width, colour):
    return reprior.MLP(width=width)
'''


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """``usermod.py`` in a temporary folder on sys.path, with the loading caches restored afterwards."""
    (tmp_path / "usermod.py").write_text(USER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    with registry.restored():
        yield tmp_path
    sys.modules.pop("usermod", None)


def test_a_reference_builds_the_cells_architecture_with_its_settings(user_module):
    spec = registry.get_architecture("usermod:make_arch")
    assert spec.name == "usermod:make_arch" and spec.default_depth == 1 and not spec.image_inputs
    arch = spec.from_settings({"width": 7, "depth": 2, "activation": "relu", "arch": spec.name})
    assert isinstance(arch, FeatureArchitecture) and (arch.width, arch.depth, arch.settings) == (7, 2, ())
    # a file path works too, stored absolute
    file_spec = registry.get_architecture(f"{user_module / 'usermod.py'}:make_arch")
    assert file_spec.name == f"{(user_module / 'usermod.py').resolve()}:make_arch"
    assert grid.validate(grid.merge({}, {"archs": ["usermod:make_arch"], "widths": [4], "out": "x"}))["archs"] == \
        ["usermod:make_arch"]


REFERENCE_ERRORS = {
    "nosuch:thing": ["importable module", "No module named 'nosuch'"],
    "usermod:nothing": ["attribute", "'nothing'"],
    "usermod:": ["MODULE:CALLABLE"],
    "/no/such/file.py:make": ["existing Python file"],
}


@pytest.mark.parametrize("reference", list(REFERENCE_ERRORS))
def test_bad_references_are_refused_naming_arch(user_module, reference):
    with pytest.raises(grid.ConfigError) as info:
        grid.validate(grid.merge({}, {"archs": [reference], "widths": [4], "out": "x"}))
    assert str(info.value).startswith("arch (--arch): expected ")
    for fragment in REFERENCE_ERRORS[reference]:
        assert fragment in str(info.value), str(info.value)


@pytest.mark.parametrize("callable_name, fragments", [
    ("not_an_arch", ["returning a reprior architecture", "returning str 'mlp'"]),
    ("wrong_width", ["the cell's width 4", "width 5"]),
    ("needs_more", ["keyword arguments among width, depth, activation", "colour"]),
])
def test_bad_callables_are_refused(user_module, callable_name, fragments):
    with pytest.raises(ValueError) as info:
        registry.get_architecture(f"usermod:{callable_name}").from_settings({"width": 4, "depth": 1})
    for fragment in fragments:
        assert fragment in str(info.value), str(info.value)


def test_an_entry_point_adds_a_name(user_module):
    dist = user_module / "usermod-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: usermod\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[reprior.architectures]\nusermlp = usermod:make_arch\n")
    assert registry.architecture_names()[-1] == "usermlp" and "usermod" not in sys.modules  # listed, not imported
    arch = grid.architecture_spec("usermlp").from_settings({"width": 3, "depth": 1})
    assert arch.name == "user-mlp" and arch.width == 3
    with pytest.raises(ValueError, match="'usermlp', which is registered already"):  # registered on first use
        registry.register_architecture(grid.architecture_spec("usermlp"))


SYN = ["--dataset", "synthetic", "--n-train", "8", "--n-test", "4"]


def test_cli_dry_run_lists_the_cells_of_a_reference(user_module, capsys, monkeypatch):
    monkeypatch.chdir(user_module)
    config = user_module / "sweep.toml"
    config.write_text('archs = ["usermod:make_arch"]\nwidths = [4, 8]\nparameterisations = ["reprior"]\n')
    code, out, err = run(capsys, "sweep", "--config", config, *SYN, "--dry-run", "--out", user_module / "out")
    assert code == 0, err
    assert "2 cells in the grid" in out and out.count("usermod:make_arch d1 w") == 2


@pytest.mark.parametrize("reference, fragments", [
    ("nosuch:thing", ["arch (--arch)", "nosuch:thing", "No module named"]),
    ("usermod:not_an_arch", ["arch (--arch)", "returning a reprior architecture"]),
    ("usermod:fixed_width", ["arch (--arch)", "grows with the width", "d = 5 at width 4 and d = 5 at width 8"]),
])
@pytest.mark.parametrize("dry_run", [False, True], ids=["run", "dry-run"])
def test_cli_bad_architectures_one_line_exit_2_nothing_written(user_module, capsys, reference, fragments, dry_run):
    out = user_module / "out"
    argv = ["sweep", "--arch", reference, "--widths", "4", "8", *SYN, "--out", out, *(["--dry-run"] if dry_run else [])]
    message = one_line_error(*run(capsys, *argv)[::2])
    for fragment in fragments:
        assert fragment in message, message
    assert not out.exists()


# ---------------------------------------------------------------------------
# The docs page and its examples
# ---------------------------------------------------------------------------


def test_the_pages_example_blocks_are_the_example_files():
    """docs/your_model.md shows each docs/examples file verbatim (its first line names it)."""
    import re

    page = (ROOT / "docs" / "your_model.md").read_text()
    blocks = re.findall(r"^```python\n(.*?)^```", page, re.S | re.M)
    shown = {}
    for block in blocks:
        first = block.splitlines()[0]
        if first.startswith("# docs/examples/"):
            shown[first.removeprefix("# ")] = "\n".join(block.splitlines()[1:]) + "\n"
    assert set(shown) == {f"docs/examples/{p.name}" for p in EXAMPLES.glob("*.py")}
    for path, text in shown.items():
        assert text == (ROOT / path).read_text(), path
    assert "your_model.md" in (ROOT / "mkdocs.yml").read_text()


@pytest.mark.e2e  # two samplers compiled: about a minute on a busy machine
def test_the_interop_examples_run_with_tiny_settings(capsys):
    with jax.enable_x64(True):
        load_example("interop_blackjax").main(["--width", "8", "--n-train", "16", "--num-steps", "20"])
        load_example("interop_numpyro").main(["--width", "8", "--n-train", "16", "--num-samples", "10"])
    out = capsys.readouterr().out
    assert "BlackJAX" in out and "NumPyro" in out


@pytest.mark.e2e  # the examples' own runs and a CLI sweep of the CNN: about a minute
def test_the_cnn_examples_and_a_cli_sweep_run(tmp_path, capsys):
    pytest.importorskip("flax.nnx")
    pytest.importorskip("equinox")
    tiny = ["--widths", "4", "--n-train", "8", "--n-test", "4", "--num-warmup", "5", "--num-samples", "5",
            "--num-chains", "1"]
    for name in ("cnn", "flax_cnn", "equinox_cnn"):
        load_example(name).main(tiny)
    assert capsys.readouterr().out.count("ESS per gradient") == 6
    code, out, err = run(capsys, "sweep", "--arch", f"{EXAMPLES / 'cnn.py'}:make_arch", "--widths", "4", "8",
                         "--dataset", "digits", "--n-train", "8", "--n-test", "4", "--num-warmup", "5",
                         "--num-samples", "5", "--num-chains", "1", "--sampler-option", "max_tree_depth=2",
                         "--no-report", "--out", tmp_path / "out")
    assert code == 0, out + err
    assert len(list((tmp_path / "out" / "cells").glob("*/metrics.json"))) == 4
