"""Wide network families in NTK parameterisation, as pure functions of a parameter pytree."""

from .base import Architecture, readout_matrix, split_readout, with_readout
from .layers import ACTIVATIONS
from .mlp import MLP
from .resnet import ResNet

__all__ = ["ACTIVATIONS", "Architecture", "MLP", "ResNet", "readout_matrix", "split_readout", "with_readout"]
