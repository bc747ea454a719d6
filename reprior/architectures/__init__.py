"""Wide network families in NTK parameterisation, as pure functions of a parameter pytree.

Every module of this package is imported with it, and each architecture
module registers itself (:mod:`reprior.architectures.registry`): a new
architecture is one new file here.
"""

import importlib as _importlib
import pkgutil as _pkgutil

from .adapters import from_equinox, from_flax
from .base import Architecture, readout_matrix, split_readout, with_readout
from .layers import ACTIVATIONS
from .mlp import MLP
from .registry import ArchitectureSpec, architecture_names, get_architecture, register_architecture
from .resnet import ResNet
from .user import FeatureArchitecture

for _module in _pkgutil.iter_modules(__path__):
    _importlib.import_module(f"{__name__}.{_module.name}")  # each architecture module registers itself

__all__ = ["ACTIVATIONS", "Architecture", "ArchitectureSpec", "FeatureArchitecture", "MLP", "ResNet",
           "architecture_names", "from_equinox", "from_flax", "get_architecture", "readout_matrix",
           "register_architecture", "split_readout", "with_readout"]
