"""Seeded random generators: every random draw of a trial comes from a key of integers.

A key such as ``(seed, iteration, stream)`` or ``(stream, seed, round, image)`` is mixed by
NumPy's ``SeedSequence`` into one 64-bit word, so draws depend on the key alone, never on
processing order, batching or the global RNG.
"""

from __future__ import annotations

import numpy as np
import torch

SEED_BITS = (32, 63, 64)


def derive_seed(*parts: int, bits: int = 63) -> int:
    """A seed mixed from the integers ``parts``, stable across runs and platforms.

    The first 64-bit word of ``SeedSequence(parts)``, kept whole (``bits=64``), shifted
    right by one (``bits=63``, fits a signed 64-bit integer) or cut to its low 32 bits
    (``bits=32``, equal to the first 32-bit word of the sequence).
    """
    if bits not in SEED_BITS:
        raise ValueError(f"bits: expected one of {SEED_BITS}, got {bits!r}")
    word = int(np.random.SeedSequence([int(p) for p in parts])
               .generate_state(1, dtype=np.uint64)[0])
    return {64: word, 63: word >> 1, 32: word & 0xFFFFFFFF}[bits]


def seeded_generator(*parts: int, bits: int = 63) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded with :func:`derive_seed` of ``parts``."""
    return torch.Generator().manual_seed(derive_seed(*parts, bits=bits))
