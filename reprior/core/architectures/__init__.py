"""Wide network families in NTK parameterisation, as pure functions of a parameter pytree.

Every module of this package is imported with it, and each architecture
module registers itself (:mod:`reprior.core.architectures.registry`): a new
architecture is one new file here.
"""

import importlib as _importlib
import pkgutil as _pkgutil

from reprior.core.architectures.adapters import from_equinox, from_flax
from reprior.core.architectures.base import Architecture, readout_matrix, split_readout, with_readout
from reprior.core.architectures.layers import ACTIVATIONS
from reprior.core.architectures.mlp import MLP
from reprior.core.architectures.registry import (ArchitectureSpec, architecture_names, get_architecture,
                                                 register_architecture)
from reprior.core.architectures.resnet import ResNet
from reprior.core.architectures.user import FeatureArchitecture

for _module in _pkgutil.iter_modules(__path__):
    _importlib.import_module(f"{__name__}.{_module.name}")  # each architecture module registers itself

__all__ = ["ACTIVATIONS", "Architecture", "ArchitectureSpec", "FeatureArchitecture", "MLP", "ResNet",
           "architecture_names", "from_equinox", "from_flax", "get_architecture", "readout_matrix",
           "register_architecture", "split_readout", "with_readout"]
