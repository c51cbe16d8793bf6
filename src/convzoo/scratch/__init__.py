"""Convolutional building blocks written from first principles, each checked against PyTorch.

Pure tensor code (indexing, ``Tensor.unfold``, matrix products): the primitives never call
``torch.nn.functional``. Only ``explain``, which prints worked examples, calls it, to check them.

- ``corr2d`` (the loop), ``conv2d`` (vectorised), ``conv1x1`` (a matrix product), ``sliding_windows``
- ``pad2d``: zeros, constant, reflect, replicate, circular
- ``pool2d`` (the loop), ``max_pool2d``, ``avg_pool2d``, ``adaptive_avg_pool2d``
- ``batch_norm`` and the ``BatchNorm`` module
- ``output_size``: the output-size rule
- ``explain``: the worked examples of ``convzoo explain``
"""

from convzoo.scratch.conv import CONV_PADDING_MODES, conv1x1, conv2d, corr2d, sliding_windows
from convzoo.scratch.explain import TOPICS, Explanation, explain
from convzoo.scratch.norm import BatchNorm, batch_norm
from convzoo.scratch.pad import PAD_MODES, pad2d
from convzoo.scratch.pool import adaptive_avg_pool2d, avg_pool2d, max_pool2d, pool2d
from convzoo.scratch.shapes import output_size

__all__ = [
    "CONV_PADDING_MODES",
    "PAD_MODES",
    "TOPICS",
    "BatchNorm",
    "Explanation",
    "adaptive_avg_pool2d",
    "avg_pool2d",
    "batch_norm",
    "conv1x1",
    "conv2d",
    "corr2d",
    "explain",
    "max_pool2d",
    "output_size",
    "pad2d",
    "pool2d",
    "sliding_windows",
]
