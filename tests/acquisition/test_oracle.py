"""The ground-truth oracle (uses the ground truth: an upper bound, not a method), on a
hand-made 8x12 image: two classes side by side, errors on both sides of their boundary and
a wrong 2x2 block inside the left class."""

import pytest
import torch

from ripu.acquisition import Budget, LabelState, get_strategy, select_round
from ripu.acquisition.oracle import oracle_score, wrong_pixels
from ripu.acquisition.scores import window_sum
from ripu.errors import RipuError
from ripu.report.names import display_name, figure_text, group_name, uses_ground_truth

H, W = 8, 12


def scene() -> tuple[torch.Tensor, torch.Tensor]:
    """Label: class 0 in columns 0-5, class 1 in 6-11. Prediction: columns 5 and 6 swapped
    (a boundary error, 16 pixels) and rows 2-3 x columns 1-2 predicted 1 (4 pixels)."""
    label = torch.zeros(H, W, dtype=torch.long)
    label[:, 6:] = 1
    pred = label.clone()
    pred[:, 5], pred[:, 6] = 1, 0
    pred[2:4, 1:3] = 1
    logits = 5.0 * torch.nn.functional.one_hot(pred, 2).permute(2, 0, 1).float()
    return logits, label


def free() -> torch.Tensor:
    return torch.zeros(H, W, dtype=torch.bool)


def test_wrong_pixels_and_window_counts_by_hand():
    logits, label = scene()
    wrong = wrong_pixels(logits, label)
    assert int(wrong.sum()) == 8 + 8 + 4
    counts = window_sum(wrong.to(torch.int32), 1)
    # Windows across the boundary (centres in columns 5-6) hold both wrong columns: 6.
    assert int(counts[4, 5]) == 6 and int(counts[4, 6]) == 6
    # Inside a class: 4 around the block, 3 beside the boundary (one wrong column).
    assert int(counts[2, 1]) == 4 and int(counts[4, 4]) == 3 and int(counts[4, 7]) == 3


def test_scores_rank_interior_windows_by_wrong_pixels_and_exclude_the_boundary():
    logits, label = scene()
    score = oracle_score(logits, label, 1, torch.Generator().manual_seed(0))
    floor = score.floor()
    assert floor[2, 1] == 4 and floor[4, 4] == 3 and floor[4, 7] == 3 and floor[6, 9] == 0
    assert (floor[:, 5:7] == -1).all()  # across the boundary: below every interior window
    assert ((score - floor) < 0.5).all()  # the tie draw never reorders two counts


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_oracle_picks_the_wrong_interior_not_the_boundary(seed):
    logits, label = scene()
    selected, blocked = get_strategy("oracle")(logits, free(), 1, 1,
                                               torch.Generator().manual_seed(seed), label)
    # One 3x3 region holding the whole wrong block, nothing near the boundary, although
    # the windows across the boundary hold more wrong pixels (6 against 4).
    assert int(selected.sum()) == 9 and bool(selected[2:4, 1:3].all())
    assert not selected[:, 4:8].any()
    assert (blocked >= selected).all()


def test_ignore_pixels_make_a_window_impure():
    logits, label = scene()
    label[2, 2] = 255
    floor = oracle_score(logits, label, 1, torch.Generator()).floor()
    assert floor[2, 1] == -1 and floor[1, 1] == -1 and floor[5, 1] == 0


def test_oracle_rounds_use_the_ground_truth_labels_of_the_dataset():
    logits, label = scene()

    class Fixed(torch.nn.Module):
        def forward(self, x):
            return logits[None].expand(x.shape[0], -1, -1, -1).clone()

    item = {"image": torch.zeros(3, H, W), "label": label, "id": "a", "index": 0}
    budget = Budget("region", 9 / 96, 0, 1, 1)  # ceil(96 x 9/96 / 9) = 1 region
    state = select_round(Fixed(), [item], LabelState(), "oracle", budget, 0, seed=0,
                         progress=False)
    mask = torch.from_numpy(state.labelled["a"])
    assert int(mask.sum()) == 9 and bool(mask[2:4, 1:3].all())


def test_oracle_without_a_label_is_refused():
    logits, _ = scene()
    with pytest.raises(RipuError, match="uses the ground truth"):
        get_strategy("oracle")(logits, free(), 1, 1, torch.Generator())


def test_oracle_is_marked_as_an_upper_bound_everywhere():
    assert get_strategy("oracle").uses_ground_truth
    assert "upper bound, not a method" in get_strategy("oracle").description
    assert "upper bound, not a method" in display_name("oracle")  # tables
    assert "upper bound" in display_name("oracle", figure=True)  # figures: shorter
    assert len(display_name("oracle", figure=True)) < len(display_name("oracle"))
    assert figure_text(group_name("oracle", "2.2%")) == group_name("oracle", "2.2%",
                                                                   figure=True)
    assert figure_text("RIPU-RA @ 5%") == "RIPU-RA @ 5%"
    assert uses_ground_truth("oracle") and not uses_ground_truth("random_region")
    assert not uses_ground_truth("lse")
