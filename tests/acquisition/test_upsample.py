"""Selection's two-step logit upsampling (network output -> input size -> label size, the
authors' core/active/build.py:113, :124) against one step, on hand-built logits."""

from fractions import Fraction

import torch
from torch import nn

from ripu.acquisition import Budget, LabelState, select_round
from ripu.config import ActiveConfig
from ripu.inference import predict, upsample

# One row of class-1-minus-class-0 logits at the network's output, 3 wide; the input image
# is 4 wide, the label 7 wide (align_corners=True: sample j of n sits at j (m - 1) / (n - 1)).
OUT = [-4.0, 1.0, -4.0]
# One step, 3 -> 7 at 0, 1/3, ..., 2: -4, -7/3, -2/3, 1, -2/3, -7/3, -4 (class 1 at column 3).
ONE_STEP = [Fraction(-4), Fraction(-7, 3), Fraction(-2, 3), Fraction(1), Fraction(-2, 3),
            Fraction(-7, 3), Fraction(-4)]
# Two steps: 3 -> 4 at 0, 2/3, 4/3, 2 gives -4, -2/3, -2/3, -4; 4 -> 7 at 0, 1/2, ..., 3
# gives -4, -7/3, -2/3, -2/3, -2/3, -7/3, -4: class 0 everywhere.
TWO_STEP = [Fraction(-4), Fraction(-7, 3), Fraction(-2, 3), Fraction(-2, 3), Fraction(-2, 3),
            Fraction(-7, 3), Fraction(-4)]


class Fixed(nn.Module):
    """Returns the hand-built logits (N, 2, 1, 3) whatever the image."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        row = torch.tensor(OUT)
        logits = torch.stack([torch.zeros(3), row])[:, None, :]  # (2, 1, 3)
        return logits.expand(x.shape[0], 2, 1, 3).clone()


def item() -> dict:
    return {"image": torch.zeros(3, 2, 4), "label": torch.zeros(2, 7, dtype=torch.long),
            "id": "a", "index": 0}


def differences(two_step: bool) -> list[float]:
    (batch,) = predict(Fixed(), [item()], two_step=two_step)
    logits = batch.logits[0]  # (2, 2, 7)
    assert logits.shape == (2, 2, 7)
    assert torch.equal(logits[:, 0], logits[:, 1])  # one output row: both label rows equal
    return (logits[1, 0] - logits[0, 0]).tolist()


def test_one_and_two_steps_match_the_hand_computed_values():
    for two_step, want in ((False, ONE_STEP), (True, TWO_STEP)):
        got = differences(two_step)
        assert all(abs(g - float(w)) < 1e-6 for g, w in zip(got, want, strict=True))
    # The argmax differs at column 3 alone: class 1 in one step, class 0 in two.
    assert [d > 0 for d in differences(False)] == [False, False, False, True, False, False,
                                                   False]
    assert not any(d > 0 for d in differences(True))


def test_upsample_via_the_input_size_is_two_interpolations():
    x = torch.randn(1, 3, 4, 5, generator=torch.Generator().manual_seed(0))
    direct = nn.functional.interpolate(x, size=(9, 11), mode="bilinear", align_corners=True)
    twice = nn.functional.interpolate(
        nn.functional.interpolate(x, size=(6, 8), mode="bilinear", align_corners=True),
        size=(9, 11), mode="bilinear", align_corners=True)
    assert torch.equal(upsample(x, (9, 11)), direct)
    assert torch.equal(upsample(x, (9, 11), via=(6, 8)), twice)
    assert not torch.allclose(direct, twice)


def select(upsample_mode: str) -> torch.Tensor:
    budget = Budget("region", 0.1, 0, 1, 1)  # ceil(2 x 7 x 0.1 / 9) = 1 region
    state = select_round(Fixed(), [item()], LabelState(), "ripu_region", budget, 0, seed=0,
                         progress=False, upsample=upsample_mode)
    return torch.from_numpy(state.labelled["a"])


def test_ripu_region_picks_other_pixels_with_two_steps():
    # One step: column 3 is class 1, so the windows centred on columns 2-4 are impure; of
    # those, column 3's holds the most uncertain pixels (|d| = 2/3, 1, 2/3): columns 2-4.
    want_one = torch.zeros(2, 7, dtype=torch.bool)
    want_one[:, 2:5] = True
    # Two steps: one class everywhere, impurity 0, every score 0: the first window wins
    # (ties go to the lower flat index), columns 0-1.
    want_two = torch.zeros(2, 7, dtype=torch.bool)
    want_two[:, 0:2] = True
    assert torch.equal(select("one_step"), want_one)
    assert torch.equal(select("two_step"), want_two)


def test_two_steps_are_the_default():
    assert ActiveConfig().upsample == "two_step"
