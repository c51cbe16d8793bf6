"""Convolutional building blocks written from first principles, each checked against PyTorch."""

from convzoo.scratch.norm import BatchNorm, batch_norm
from convzoo.scratch.shapes import output_size

__all__ = ["BatchNorm", "batch_norm", "output_size"]
