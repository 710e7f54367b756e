"""Error anatomy on hand-made label and prediction maps, and its report section."""

from types import SimpleNamespace

import pandas as pd
import torch

from ripu.anatomy import boundary, error_counts, interior, labelled_on_boundary, shares
from ripu.report.anatomy import anatomy_markdown, boundary_shares, warmup_frame

H, W = 8, 12


def logits_of(pred: torch.Tensor) -> torch.Tensor:
    return 5.0 * torch.nn.functional.one_hot(pred, 2).permute(2, 0, 1).float()


def two_classes() -> torch.Tensor:
    label = torch.zeros(H, W, dtype=torch.long)
    label[:, 6:] = 1
    return label


def test_boundary_and_interior_split_the_labelled_pixels():
    label = two_classes()
    label[7, 0] = 255
    assert torch.equal(boundary(label) | interior(label), label != 255)
    assert not (boundary(label) & interior(label)).any()
    # columns 5 and 6 touch the other class; (6, 0), (6, 1) and (7, 1) touch the ignore pixel
    want = torch.zeros(H, W, dtype=torch.bool)
    want[:, 5:7] = True
    want[6, 0] = want[6, 1] = want[7, 1] = True
    assert torch.equal(boundary(label), want)


def test_errors_on_a_boundary_and_a_small_block_are_impure():
    label = two_classes()
    pred = label.clone()
    pred[:, 5], pred[:, 6] = 1, 0  # 16 wrong pixels across the boundary
    pred[2:4, 1:3] = 1  # 4 wrong pixels inside class 0
    counts = error_counts(logits_of(pred), label)
    assert counts == {"labelled": 96, "wrong": 20, "wrong_pred_pure": 0,
                      "wrong_gt_interior": 4}
    assert shares(counts) == {"wrong_share": 20 / 96, "pred_pure_share": 0.0,
                              "gt_interior_share": 0.2}


def test_a_confidently_wrong_object_is_mostly_prediction_pure():
    label = torch.zeros(H, W, dtype=torch.long)
    pred = label.clone()
    pred[0:5, 0:5] = 1  # 25 wrong pixels; the 4x4 corner's windows see class 1 alone
    counts = error_counts(logits_of(pred), label)
    assert (counts["wrong"], counts["wrong_pred_pure"], counts["wrong_gt_interior"]) == (
        25, 16, 25)
    assert shares(counts)["pred_pure_share"] == 16 / 25


def test_labelled_pixels_on_boundaries():
    mask = torch.zeros(H, W, dtype=torch.bool)
    mask[0:3, 4:7] = True  # 9 pixels, columns 5 and 6 on the boundary
    assert labelled_on_boundary(two_classes(), mask) == 6


def run(run_id, metrics):
    return SimpleNamespace(info=SimpleNamespace(run_id=run_id),
                           data=SimpleNamespace(metrics=metrics))


def test_report_section_sums_runs_and_reads_warmups():
    results = pd.DataFrame({"run_id": ["a", "b", "c", "d"],
                            "kind": ["active", "active", "active", "source_only"],
                            "method": ["ripu_region", "ripu_region", "random_region",
                                       "source_only"],
                            "budget_label": ["2.2%"] * 3 + ["0%"],
                            "network": ["small"] * 4})
    runs = [run("a", {"labelled_px/road": 60, "labelled_px/car": 40,
                      "labelled_boundary_px": 30}),
            run("b", {"labelled_px/road": 100, "labelled_boundary_px": 50}),
            run("c", {"labelled_px/road": 100, "labelled_boundary_px": 10}),
            run("d", {"final/miou": 0.2})]
    frame = boundary_shares(runs, results)
    assert frame["group"].tolist() == ["RIPU-RA @ 2.2%", "random regions @ 2.2%"]
    assert frame["boundary_share"].tolist() == [0.4, 0.1]  # 80 of 200; 10 of 100
    assert frame["runs"].tolist() == [2, 1]
    warm = warmup_frame({"source_only": {"miou": 0.2, "anatomy": {
        "wrong_share": 0.5, "pred_pure_share": 0.75, "gt_interior_share": 0.6}},
        "other": {"miou": 0.1}})
    text = " ".join(anatomy_markdown(warm, frame).split())  # cells are padded
    assert "| source_only | 50.0% | 75.0% | 60.0% |" in text
    assert "| RIPU-RA @ 2.2% | 2 | 40.0% |" in text
