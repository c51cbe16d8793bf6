"""Data sets in memory: MNIST, Fashion-MNIST, CIFAR-10 and any image folder, as uint8 tensors.

See :func:`load_dataset` for where the files are looked for, and :mod:`convzoo.data.formats` for the
readers of the official formats.
"""

from convzoo.data.datasets import (
    DATASETS,
    DEBIAN_ROOT,
    Dataset,
    Split,
    check_disjoint,
    default_cache_dir,
    load_dataset,
    split_train_val,
    subset,
)

__all__ = ["DATASETS", "DEBIAN_ROOT", "Dataset", "Split", "check_disjoint", "default_cache_dir", "load_dataset",
           "split_train_val", "subset"]
