"""The architecture registry: one registration makes an architecture a sweep choice, buildable and an NNGP."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from reprior._util import checks as _checks
from reprior.core import nngp
from reprior.core.architectures import MLP, ResNet, registry
from reprior.core.architectures.base import Architecture, check_activation, hyperparameter, readout_b_std, readout_w_std
from reprior.experiments.cli import build_parser
from reprior.experiments.runner import grid, sweep


@dataclasses.dataclass(frozen=True)
class Toy(Architecture):
    """One hidden layer of ``tanh`` features: the smallest architecture a newcomer could add."""

    width: int = hyperparameter(_checks.positive_int)
    depth: int = hyperparameter(_checks.positive_int, 1)
    activation: str = hyperparameter(check_activation, "tanh")
    w_std: float = hyperparameter(_checks.positive_float, 2**0.5)
    b_std: float = hyperparameter(_checks.nonnegative_float, 0.1)
    out_w_std: float = readout_w_std()
    out_b_std: float = readout_b_std()

    def check_inputs(self, x, name="x"):
        MLP(1).check_inputs(x, name)

    def feature_dim(self, x_shape):
        return self.width

    def init_hidden(self, rng_key, x):
        return MLP(self.width).init(rng_key, x, 1)["hidden"]

    def hidden_features(self, hidden, x):
        return MLP(self.width, activation=self.activation).hidden_features(hidden, x)


def toy_spec(name="toy"):
    return registry.ArchitectureSpec(
        name=name, cls=Toy, default_depth=1,
        from_settings=lambda s: Toy(s["width"], s["depth"], s["activation"]))


@pytest.fixture
def clean_registry():
    """The registry as it was, restored after the test."""
    with registry.restored():
        yield


def test_built_in_architectures_are_registered():
    assert registry.architecture_names()[:2] == ("mlp", "resnet")
    assert grid.ARCHS[:2] == ("mlp", "resnet") and grid.DEFAULT_DEPTH == {"mlp": 1, "resnet": 8}
    assert registry.get_architecture("resnet").cls is ResNet and registry.get_architecture("resnet").image_inputs
    settings = {"width": 3, "depth": 14, "activation": "erf", "residual_scaling": "progressive", "noise_std": 0.1,
                "arch": "resnet"}
    assert sweep.build_bnn(settings).arch == ResNet(3, 14, "erf", residual_scaling="progressive")


def test_a_registered_architecture_is_a_sweep_choice_and_buildable(clean_registry, tmp_path, capsys):
    registry.register_architecture(toy_spec())
    assert "toy" in registry.architecture_names() and "toy" in grid.ARCHS and grid.DEFAULT_DEPTH["toy"] == 1
    # the CLI lists it: --arch accepts it and its help names it
    args = build_parser().parse_args(["sweep", "--arch", "toy", "--widths", "4"])
    assert args.archs == ["toy"]
    capsys.readouterr()
    with pytest.raises(SystemExit) as stop:
        build_parser().parse_args(["sweep", "--help"])
    assert stop.value.code == 0 and "toy" in capsys.readouterr().out
    # the grid expands it with its default depth, and the runner builds it from a cell's settings
    options = grid.validate(grid.merge({}, {"archs": ["toy"], "widths": [4], "out": str(tmp_path)}))
    cells = grid.expand(options, dtype="float64")
    assert {c.settings["arch"] for c in cells} == {"toy"} and {c.settings["depth"] for c in cells} == {1}
    assert "residual_scaling" not in cells[0].settings  # another architecture's setting
    bnn = sweep.build_bnn(cells[0].settings)
    assert bnn.arch == Toy(4, 1, "relu")
    # no NNGP recursion registered: the limit says so
    with pytest.raises(NotImplementedError, match="Toy"):
        nngp.nngp_kernel(bnn.arch, np.zeros((2, 3)))


def test_a_duplicate_name_is_refused(clean_registry):
    registry.register_architecture(toy_spec())
    with pytest.raises(ValueError, match=r"`spec.name`: expected a new architecture name, received 'toy'"):
        registry.register_architecture(toy_spec())
    with pytest.raises(ValueError, match="'mlp'"):
        registry.register_architecture(toy_spec("mlp"))


def test_unknown_names_are_refused(clean_registry):
    with pytest.raises(ValueError, match=r"`arch`: expected one of 'mlp', 'resnet'.* received 'cnn'"):
        registry.get_architecture("cnn")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["sweep", "--arch", "cnn"])
    with pytest.raises(ValueError, match="lower-case identifier"):
        registry.register_architecture(toy_spec("Bad Name"))


def test_the_registered_nngp_recursion_is_used(clean_registry):
    """A subclass registered with the MLP's recursion gets the MLP's limit."""
    registry.register_architecture(dataclasses.replace(
        toy_spec(), nngp_kernel_parts=registry.get_architecture("mlp").nngp_kernel_parts))
    x = np.random.default_rng(0).standard_normal((4, 3))
    np.testing.assert_allclose(nngp.nngp_kernel(Toy(8, 2, "erf"), x), nngp.nngp_kernel(MLP(8, 2, "erf"), x),
                               rtol=1e-12, atol=0)


def test_restored_undoes_registrations_and_forgets_loaded_references():
    cnn = f"{Path(__file__).resolve().parents[1] / 'docs' / 'examples' / 'cnn.py'}:make_arch"
    before = registry.architecture_names()
    with registry.restored():
        registry.register_architecture(toy_spec("toy_restored"))
        assert "toy_restored" in registry.architecture_names()
        spec = registry.get_architecture(cnn)
        assert registry.get_architecture(cnn) is spec  # loaded once inside
    assert registry.architecture_names() == before
    with registry.restored():  # read afresh: a new spec object for the same reference
        assert registry.get_architecture(cnn) is not spec
