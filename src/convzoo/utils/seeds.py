"""Seeds derived for one purpose from the run's seed: every random choice of a run (init, shuffling, each
augmentation) is a pure function of (seed, purpose, keys...), so a run resumed anywhere, or split over
other numbers of processes or loader workers, draws what the uninterrupted run drew."""

from __future__ import annotations

import hashlib

__all__ = ["derive_seed"]


def derive_seed(seed: int, *keys: object) -> int:
    """A 63-bit seed for one purpose, e.g. ``derive_seed(0, "shuffle", epoch)``."""
    digest = hashlib.blake2b(repr((seed, *keys)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1
