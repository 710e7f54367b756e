"""Class shares of the labelled pixels (``labelled_classes.csv`` and ``.png``) from the
``labelled_px/<class>`` and ``target_px/<class>`` metrics of trials logged into a real SQLite
MLflow store; the shares are worked out by hand from the counts."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from PIL import Image

from ripu.report import build_report
from ripu.report.classes import COLUMNS
from ripu.report.figures import labelled_classes_figure
from tests.test_report import log_trial

pytestmark = pytest.mark.integration  # a real MLflow store (and, some, subprocesses)

TARGET = {"road": 600, "car": 300, "traffic_light": 100}  # shares 0.6 / 0.3 / 0.1
# Labelled pixels per seed. RIPU-RA sums to road 30, car 60, traffic light 10 of 100
# (0.3 / 0.6 / 0.1); random regions to 60 / 30 / 30 of 120 (0.5 / 0.25 / 0.25).
LABELLED = {
    ("active", "ripu_region"): [{"road": 10, "car": 30, "traffic_light": 0},
                                {"road": 20, "car": 20, "traffic_light": 10},
                                {"road": 0, "car": 10, "traffic_light": 0}],
    ("active", "random_region"): [{"road": 20, "car": 10, "traffic_light": 10}] * 3,
    ("lse", "lse"): [{"road": 5, "car": 5, "traffic_light": 5}],  # selects nothing: left out
}


def counts(prefix: str, values: dict[str, int]) -> dict[str, float]:
    return {f"{prefix}/{c}": float(v) for c, v in values.items()}


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("classes")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    MlflowClient(uri).create_experiment("classes", artifact_location=str(root / "artifacts"))
    for (kind, strategy), seeds in LABELLED.items():
        for seed, labelled in enumerate(seeds):
            log_trial(uri, "classes", f"{strategy}-s{seed}", kind, strategy, seed, 0.5,
                      extra={**counts("labelled_px", labelled), **counts("target_px", TARGET)})
    # a selecting run without the metrics (an older trainer) is left out, not counted as 0
    log_trial(uri, "classes", "entropy-s0", "active", "entropy_region", 0, 0.5)
    out = root / "out"
    build_report(uri, experiment="classes", out_dir=out)
    return {"out": out, "shares": pd.read_csv(out / "labelled_classes.csv")}


def test_shares_hand_computed(report):
    s = report["shares"]
    assert list(s.columns) == list(COLUMNS)
    table = {(r.group, r["class"]): (r.runs, r.pixels, r.share) for _, r in s.iterrows()}
    assert list(dict.fromkeys(s["group"])) == ["target", "random regions @ 2.2%",
                                               "RIPU-RA @ 2.2%"]  # results.csv's order
    assert list(dict.fromkeys(s["class"])) == ["road", "traffic_light", "car"]  # docs/method.md
    assert table["target", "road"] == (6, 3600, 0.6)  # summed over the 6 runs counted
    assert table["target", "traffic_light"] == (6, 600, 0.1)
    assert table["RIPU-RA @ 2.2%", "road"] == (3, 30, 0.3)
    assert table["RIPU-RA @ 2.2%", "car"] == (3, 60, 0.6)
    assert table["RIPU-RA @ 2.2%", "traffic_light"] == (3, 10, 0.1)
    assert table["random regions @ 2.2%", "road"] == (3, 60, 0.5)
    assert table["random regions @ 2.2%", "car"] == (3, 30, 0.25)


def test_shares_sum_to_one_per_group(report):
    sums = report["shares"].groupby("group")["share"].sum()
    assert sums.to_numpy() == pytest.approx(np.ones(3), abs=1e-6)


def test_figure_colours_by_share_against_the_target(report):
    fig = labelled_classes_figure(report["shares"], "classes")
    ax = fig.axes[0]
    ratio = ax.images[0].get_array()
    # rows target, random, RIPU-RA; columns road, traffic light, car
    assert ratio[0].tolist() == [0.0, 0.0, 0.0]
    assert ratio[1].tolist() == pytest.approx([math.log2(5 / 6), math.log2(2.5),
                                               math.log2(0.25 / 0.3)])
    assert ratio[2].tolist() == pytest.approx([math.log2(0.5), 0.0, math.log2(2.0)])
    texts = [t.get_text() for t in ax.texts]
    assert texts == ["60.0", "10.0", "30.0", "50.0", "25.0", "25.0", "30.0", "10.0", "60.0"]
    assert [t.get_text() for t in ax.get_yticklabels()] == [
        "target", "random regions @ 2.2%", "RIPU-RA @ 2.2%"]
    image = Image.open(report["out"] / "labelled_classes.png")
    assert image.format == "PNG" and image.width >= 600 and image.height >= 200
    assert len(np.unique(np.asarray(image.convert("RGB")).reshape(-1, 3), axis=0)) > 50


def test_without_metrics_the_table_is_empty_and_the_figure_says_so(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    MlflowClient(uri).create_experiment("bare", artifact_location=str(tmp_path / "a"))
    log_trial(uri, "bare", "ra", "active", "ripu_region", 0, 0.5)
    build_report(uri, experiment="bare", out_dir=tmp_path / "out")
    assert (tmp_path / "out" / "labelled_classes.csv").read_text() == ",".join(COLUMNS) + "\n"
    fig = labelled_classes_figure(pd.read_csv(tmp_path / "out" / "labelled_classes.csv"), "bare")
    assert [t.get_text() for t in fig.axes[0].texts] == [
        "no labelled_px/<class> metrics were logged"]
    assert Image.open(tmp_path / "out" / "labelled_classes.png").format == "PNG"
