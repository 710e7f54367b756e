"""ripu.seeding: one derivation from a key of integers, in three widths."""

import numpy as np
import pytest
import torch

from ripu.seeding import derive_seed, seeded_generator


@pytest.mark.parametrize("key", [(0,), (1, 2, 3), (7, 0, 5, 11), (2**31, 3)])
def test_widths_are_the_first_word_of_the_seed_sequence(key):
    words32 = np.random.SeedSequence(list(key)).generate_state(2, np.uint32)
    first64 = int(words32[0]) | int(words32[1]) << 32  # little-endian pair
    assert derive_seed(*key, bits=64) == first64
    assert derive_seed(*key) == first64 >> 1 < 2**63
    assert derive_seed(*key, bits=32) == int(words32[0])


def test_generator_depends_on_every_part_and_nothing_else():
    draw = lambda *key: torch.rand(3, generator=seeded_generator(*key)).tolist()  # noqa: E731
    assert draw(1, 2, 3) == draw(1, 2, 3)
    assert len({tuple(draw(*k)) for k in [(1, 2, 3), (1, 2, 4), (1, 3, 3), (0, 2, 3)]}) == 4
    with pytest.raises(ValueError, match="bits"):
        derive_seed(1, bits=16)
