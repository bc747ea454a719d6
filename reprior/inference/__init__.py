"""Inference: the kernels and their NumPyro adapter, the compiled chain loop and its checkpoints,
:func:`reprior.sample`, the NumPyro models, the ``InferenceData`` layout and the one failed-chain rule.

It imports :mod:`reprior.core` and :mod:`reprior._util`, never the evaluation or experiment layers.
"""
