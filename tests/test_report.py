"""The report rebuilt from a real MLflow store (SQLite) holding runs logged as trials log them."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient
from PIL import Image

from ripu.acquisition.strategies import get_strategy
from ripu.errors import RipuError
from ripu.kinds import KINDS
from ripu.report import OUTPUTS, build_report
from ripu.tracking import Tracker

pytestmark = pytest.mark.integration  # a real MLflow store (and, some, subprocesses)

REPO = Path(__file__).resolve().parents[1]
CLASSES = ("road", "sidewalk", "building", "traffic_light", "car")
POINT_FRACTION = 40 / (256 * 128)


def log_trial(uri: str, experiment: str, trial: str, kind: str, strategy: str, seed: int,
              miou: float, *, budget: float = 0.022, points: int = 40,
              status: str = "FINISHED", params_hash: str | None = None,
              parent: str | None = None, arch: str = "small", miou13: float | None = None,
              extra: dict[str, float] | None = None, tags: dict[str, str] | None = None) -> str:
    """One trial run with the tags, params and metrics TrackingCallback logs (plus ``extra``
    final metrics, and ``tags``); returns its id."""
    registered = KINDS.get(kind)  # the warm-up's "warmup" is not a trial kind
    selecting = registered is not None and registered.selects
    tags = {"ripu.kind": kind, "ripu.strategy": strategy if selecting else kind,
            "ripu.budget": str(budget if selecting else 0.0),
            "ripu.points": str(points if selecting else 0), "ripu.seed": str(seed),
            "ripu.params_hash": params_hash or f"hash-{trial}", "ripu.git_revision": "abc123",
            "ripu.trial": trial, "ripu.experiment": experiment, **(tags or {})}
    tracker = Tracker(uri, experiment, run_name=trial, tags=tags, parent_run_id=parent)
    tracker.log_params({"seed": seed, "train.kind": kind, "model.arch": arch,
                        "model.backbone": "resnet101"})
    for step in (0, 10):
        tracker.log_metrics({"train/loss": 2.0 / (step + 1), "train/lr": 0.01}, step)
    tracker.log_metrics({"val/miou": miou - 0.01}, 10)
    if not selecting:
        labelled = registered.labelled_fraction_fixed if registered else 0.0
    else:
        labelled = POINT_FRACTION if get_strategy(strategy).mode == "point" else budget
        for r in range(2):
            tracker.log_metrics({"acq/labelled_fraction": labelled * (r + 1) / 2}, step=r)
    final = {"final/miou": miou, "final/labelled_fraction": labelled, "final/seconds": 12.5,
             "final/iterations": 20}
    if miou13 is not None:
        final["final/miou13"] = miou13
    final.update({f"final/iou/{c}": min(1.0, miou * (0.6 + 0.2 * i))
                  for i, c in enumerate(CLASSES)})
    final.update(extra or {})
    tracker.log_metrics(final, step=20)
    if status != "RUNNING":
        tracker.finish(status)
    time.sleep(0.005)  # distinct start times: "newest" is well defined
    return tracker.run_id


def sweep_parent(uri: str, experiment: str, trials: dict[str, str], finish: bool = True) -> str:
    tracker = Tracker(uri, experiment, run_name="sweep", tags={"ripu.sweep": "1"})
    tracker.log_text(json.dumps(trials), "trials.json")
    if finish:
        tracker.finish()
    time.sleep(0.005)
    return tracker.run_id


# mIoU per (kind, strategy, budget): one value per seed. ripu_region @ 2.2% is the
# hand-computed group: mean 43.00, sample std sqrt((9 + 1 + 16) / 2) = sqrt(13) = 3.61.
SYNTHETIC = [
    ("source_only", "source_only", 0.0, [0.30, 0.32]),
    ("lse", "lse", 0.0, [0.34, 0.36]),
    ("active", "ripu_point", 0.022, [0.38, 0.40]),
    ("active", "random_region", 0.01, [0.35, 0.37]),
    ("active", "random_region", 0.022, [0.44, 0.46]),  # above RIPU: an ordering violation
    ("active", "ripu_region", 0.01, [0.40, 0.41, 0.45]),
    ("active", "ripu_region", 0.022, [0.40, 0.42, 0.47]),
    ("hybrid", "ripu_region", 0.022, [0.44, 0.46]),
    ("supervised", "supervised", 0.0, [0.60]),
]


def trial_name(kind: str, strategy: str, budget: float, seed: int) -> str:
    return f"{kind}-{strategy}-{budget:g}-s{seed}"


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> dict:
    """One SQLite store with the experiments the tests read (built once: MLflow is slow)."""
    root = tmp_path_factory.mktemp("report")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(uri)
    for name in ("synthetic", "sweep_exp", "gta5_to_cityscapes", "empty", "only_failed"):
        client.create_experiment(name, artifact_location=str(root / "artifacts" / name))

    exp = "synthetic"
    dedup = trial_name("active", "ripu_region", 0.022, 0)
    log_trial(uri, exp, dedup, "active", "ripu_region", 0, 0.10)  # older run of a trial
    log_trial(uri, exp, "warmup", "warmup", "warmup", 0, 0.25)
    for kind, strategy, budget, values in SYNTHETIC:
        for seed, miou in enumerate(values):
            pixels = {f"target_px/{c}": 100.0 * (i + 1) for i, c in enumerate(CLASSES)}
            pixels.update({f"labelled_px/{c}": float((i + 1) * (seed + 1) + len(strategy))
                           for i, c in enumerate(CLASSES)})
            log_trial(uri, exp, trial_name(kind, strategy, budget, seed), kind, strategy, seed,
                      miou, budget=budget, extra=pixels)
    log_trial(uri, exp, dedup, "active", "ripu_region", 0, 0.99, status="FAILED")
    log_trial(uri, exp, "still-running", "active", "ripu_region", 5, 0.98, status="RUNNING")

    exp = "sweep_exp"
    old = sweep_parent(uri, exp, {"t_c": "h3"})
    log_trial(uri, exp, "t_a", "active", "ripu_region", 0, 0.50, params_hash="h1", parent=old)
    log_trial(uri, exp, "t_c", "active", "ripu_region", 1, 0.60, params_hash="h3", parent=old)
    new = sweep_parent(uri, exp, {"t_a": "h1", "t_b": "h2", "t_missing": "h9"})
    log_trial(uri, exp, "t_b", "active", "random_region", 0, 0.55, params_hash="h2",
              parent=new)
    log_trial(uri, exp, "t_a", "active", "ripu_region", 0, 0.90, params_hash="h0", parent=new)
    sweep_parent(uri, exp, {"t_c": "h3"}, finish=False)  # a sweep still running

    exp = "gta5_to_cityscapes"
    for seed, miou in enumerate([0.60, 0.62]):
        log_trial(uri, exp, f"ra-{seed}", "active", "ripu_region", seed, miou,
                  arch="deeplabv2")
    log_trial(uri, exp, "pa-0", "active", "ripu_point", 0, 0.55, arch="deeplabv2")
    # LSE on two networks, with one source-only start on DeepLab-v2: never averaged or paired
    # across networks
    log_trial(uri, exp, "src-0", "source_only", "source_only", 0, 0.40, arch="deeplabv2")
    log_trial(uri, exp, "lse-0", "lse", "lse", 0, 0.45, arch="deeplabv2")
    log_trial(uri, exp, "lse-vgg-0", "lse", "lse", 0, 0.38, arch="vgg16_fcn8s")

    log_trial(uri, "only_failed", "x", "active", "ripu_region", 0, 0.5, status="FAILED")
    return {"root": root, "uri": uri, "dedup": dedup}


@pytest.fixture(scope="module")
def synthetic(store) -> dict:
    out = store["root"] / "rep_synthetic"
    info = build_report(store["uri"], experiment="synthetic", out_dir=out)
    return {"out": out, "info": info, "results": pd.read_csv(out / "results.csv"),
            "summary": pd.read_csv(out / "summary.csv"),
            "md": flat((out / "summary.md").read_text())}


def flat(text: str) -> str:
    """Markdown with the table padding collapsed."""
    return re.sub(r" +", " ", text)


def group(summary: pd.DataFrame, method: str, label: str) -> pd.Series:
    rows = summary[(summary["method"] == method) & (summary["budget_label"] == label)]
    assert len(rows) == 1, (method, label, summary[["method", "budget_label"]])
    return rows.iloc[0]


def test_results_use_newest_finished_run_per_trial(synthetic, store):
    res = synthetic["results"]
    assert len(res) == sum(len(v) for *_, v in SYNTHETIC) == synthetic["info"]["runs"]
    assert res["trial"].is_unique
    assert not {"warmup", "still-running"} & set(res["trial"])
    # the older run (0.10) and the newer FAILED one (0.99) of the same trial are ignored
    assert res.loc[res["trial"] == store["dedup"], "miou"].tolist() == [0.40]
    assert set(res["kind"]) == {"source_only", "lse", "active", "hybrid", "supervised"}
    assert [c for c in res.columns if c.startswith("iou_")] == [
        "iou_road", "iou_sidewalk", "iou_building", "iou_traffic_light", "iou_car"]
    row = res[res["trial"] == store["dedup"]].iloc[0]
    assert (row["kind"], row["strategy"], row["budget"], row["points"], row["seed"]) == (
        "active", "ripu_region", 0.022, 40, 0)
    assert row["labelled_fraction"] == pytest.approx(0.022)
    assert row["seconds"] == 12.5
    assert row["iou_car"] == pytest.approx(0.40 * 1.4)
    assert synthetic["info"]["parent_run_id"] is None
    # sorted: kinds in report order, then method and budget
    assert res["kind"].iloc[0] == "source_only" and res["kind"].iloc[-1] == "supervised"


def test_summary_hand_computed(synthetic):
    s = synthetic["summary"]
    assert len(s) == len(SYNTHETIC) == synthetic["info"]["groups"]
    ra = group(s, "ripu_region", "2.2%")
    assert ra["n"] == 3
    assert ra["miou_mean"] == 43.0
    assert ra["miou_std"] == round(math.sqrt(13), 2) == 3.61
    assert (ra["miou_min"], ra["miou_max"]) == (40.0, 47.0)
    assert ra["labelled_percent"] == 2.2
    assert ra["iou_car"] == round(100 * 1.4 * 0.43, 2)  # mean of the per-class IoUs
    pa = group(s, "ripu_point", "40 px/image")
    assert (pa["n"], pa["miou_mean"], pa["miou_std"]) == (2, 39.0, round(math.sqrt(2), 2))
    assert pa["labelled_percent"] == round(100 * POINT_FRACTION, 4)
    hyb = group(s, "hybrid/ripu_region", "2.2%")
    assert (hyb["n"], hyb["miou_mean"]) == (2, 45.0)
    sup = group(s, "supervised", "100%")
    assert sup["n"] == 1 and sup["miou_mean"] == 60.0 and math.isnan(sup["miou_std"])
    assert group(s, "source_only", "0%")["labelled_percent"] == 0.0
    md = synthetic["md"]
    assert "| RIPU-RA | 2.2% | 3 | 43.00 ± 3.61 | 40.00 – 47.00 |" in md
    assert "| supervised | 100% | 1 | 60.00 | 60.00 – 60.00 |" in md


def test_metrics_json(synthetic):
    m = json.loads((synthetic["out"] / "metrics.json").read_text())
    assert m["ripu_region@2.2%"] == {"miou_mean": 43.0, "miou_std": 3.61, "n": 3,
                                     "labelled_percent": 2.2}
    assert m["ripu_point@40px"]["n"] == 2
    assert m["supervised@100%"]["miou_std"] is None
    # best leaves out supervised (the upper bound): hybrid and random_region@2.2% tie at 45
    assert m["best"]["name"] in ("hybrid/ripu_region@2.2%", "random_region@2.2%")
    assert m["best"]["miou_mean"] == 45.0
    assert synthetic["info"]["best"] == m["best"]["name"]
    curve = pd.read_csv(synthetic["out"] / "budget_curve.csv")
    assert list(curve.columns[:3]) == ["strategy", "labelled_percent", "miou"]
    assert curve.loc[curve["strategy"] == "ripu_region", "miou"].tolist() == [42.0, 43.0]


def test_not_comparable_statement_and_ordering(synthetic):
    md = synthetic["md"]
    assert "not comparable with the published ones in absolute terms" in md
    assert "source-only / LSE (no target labels) < RIPU-PA 40 px/image < RIPU-RA 2.2%" in md
    assert "| GTA5 -> Cityscapes (19 classes) | RIPU-RA | DeepLab-v2 R101 | 2.2% | 69.6 |" in md
    assert "- ✓ source only @ 0% (31.00) < RIPU-PA @ 40 px/image (39.00)" in md
    assert "- ✓ RIPU-PA @ 40 px/image (39.00) < RIPU-RA @ 1% (42.00)" in md
    assert "- ✓ RIPU-RA @ 2.2% (43.00) < supervised @ 100% (60.00)" in md
    assert "- ✓ random regions @ 1% (36.00) < RIPU-RA @ 1% (42.00)" in md
    assert "- ✗ random regions @ 2.2% (45.00) < RIPU-RA @ 2.2% (43.00)" in md


def test_sweep_parent_selects_its_trials(store):
    out = store["root"] / "rep_sweep"
    info = build_report(store["uri"], experiment="sweep_exp", out_dir=out)
    res = pd.read_csv(out / "results.csv")
    # t_a: the run with the parent's hash (logged under the older sweep), not the newer h0 run;
    # t_c is not in the newest finished parent; t_missing has no run
    assert sorted(zip(res["trial"], res["miou"], strict=True)) == [("t_a", 0.50), ("t_b", 0.55)]
    assert info["missing_trials"] == ["t_missing"]
    assert info["parent_run_id"] is not None
    md = (out / "summary.md").read_text()
    assert info["parent_run_id"] in md and "`t_missing`" in md


def test_paper_table_for_gta5(store):
    out = store["root"] / "rep_gta5"
    build_report(store["uri"], experiment="gta5_to_cityscapes", out_dir=out)
    md = flat((out / "summary.md").read_text())
    assert "Setting: GTA5 -> Cityscapes (19 classes)" in md
    assert "not comparable" not in md
    ours = "(n={n}, deeplabv2/resnet101)"
    assert (f"| RIPU-RA | DeepLab-v2 R101 | 2.2% | 69.6 | 61.00 ± 1.41 {ours.format(n=2)} |"
            in md)
    assert f"| RIPU-PA | DeepLab-v2 R101 | 40 px/image | 65.5 | 55.00 {ours.format(n=1)} |" in md
    assert f"| LSE + focal loss | DeepLab-v2 R101 | 0 | 47.5 | 45.00 {ours.format(n=1)} |" in md
    assert "| LSE + focal loss | VGG16-FCN8s | 0 | 39.0 | 38.00 (n=1, vgg16_fcn8s) |" in md
    for row in ("| RIPU-RA | DeepLab-v3+ R101 | 5% | 71.2 | not run |",
                "| MADA | DeepLab-v3+ | 5% | 64.9 | not run |"):
        assert row in md
    assert "SYNTHIA" not in md  # only the matching setting's rows


def test_a_method_on_two_networks_is_two_groups(store):
    """LSE on DeepLab-v2 (45) and on VGG16-FCN8s (38) in one experiment: two summary rows and
    metrics keys, never one mean of 41.5; LSE is paired with source-only on its own network
    only; the ordering checks compare groups of one network."""
    out = store["root"] / "rep_gta5_networks"
    build_report(store["uri"], experiment="gta5_to_cityscapes", out_dir=out)
    summary = pd.read_csv(out / "summary.csv")
    lse = summary[summary["method"] == "lse"]
    assert sorted(zip(lse["network"], lse["miou_mean"], lse["n"], strict=True)) == [
        ("deeplabv2/resnet101", 45.0, 1), ("vgg16_fcn8s", 38.0, 1)]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["lse@0%@deeplabv2/resnet101"]["miou_mean"] == 45.0
    assert metrics["lse@0%@vgg16_fcn8s"]["miou_mean"] == 38.0
    assert "lse@0%" not in metrics
    paired = pd.read_csv(out / "paired.csv")
    assert list(zip(paired["method"], paired["network"], paired["mean_diff"], strict=True)) == [
        ("lse", "deeplabv2/resnet101", 5.0)]
    md = flat((out / "summary.md").read_text())
    assert "| LSE | vgg16_fcn8s | 0% | 1 | 38.00 | 38.00 – 38.00 |" in md
    assert "| LSE | deeplabv2/resnet101 | 0% | 1 | 45.00 | 45.00 – 45.00 |" in md
    assert ("- ✗ LSE @ 0% on deeplabv2/resnet101 (45.00) < RIPU-PA @ 40 px/image on "
            "deeplabv2/resnet101 (55.00)") not in md  # 45 < 55 holds: a tick
    assert ("- ✓ LSE @ 0% on deeplabv2/resnet101 (45.00) < RIPU-PA @ 40 px/image on "
            "deeplabv2/resnet101 (55.00)") in md
    assert "LSE @ 0% on vgg16_fcn8s (38.00) <" not in md  # no RIPU on VGG to compare with


def test_rebuild_is_byte_identical(store, synthetic):
    out = store["root"] / "rep_again"
    build_report(store["uri"], experiment="synthetic", out_dir=out)
    for name in ("results.csv", "summary.csv", "summary.md", "metrics.json",
                 "budget_curve.csv"):
        assert (out / name).read_bytes() == (synthetic["out"] / name).read_bytes(), name
    shutil.rmtree(out)
    build_report(store["uri"], experiment="synthetic", out_dir=out)
    assert (out / "summary.md").read_bytes() == (synthetic["out"] / "summary.md").read_bytes()
    assert not list(out.glob(".*"))  # no temporary files left behind


def test_every_output_is_written_and_declared_in_the_report_stage(synthetic):
    assert sorted(p.name for p in synthetic["out"].iterdir()) == sorted(OUTPUTS)
    assert synthetic["info"]["outputs"] == {n: str(synthetic["out"] / n) for n in OUTPUTS}
    stage = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]["report"]
    outs = {next(iter(o)) if isinstance(o, dict) else o for o in stage["outs"]}
    assert outs == {f"reports/{n}" for n in OUTPUTS}


@pytest.mark.parametrize("name", ["budget_curve.png", "per_class.png", "labelled_classes.png"])
def test_figures_are_real_images(synthetic, name):
    image = Image.open(synthetic["out"] / name)
    assert image.format == "PNG" and image.width >= 600 and image.height >= 300
    pixels = np.asarray(image.convert("RGB")).reshape(-1, 3)
    assert (pixels.min(axis=1) < 200).mean() > 0.03  # far from blank
    assert len(np.unique(pixels, axis=0)) > 50  # lines, text and colours, not one fill


@pytest.mark.parametrize("experiment", ["empty", "only_failed", "no_such_experiment"])
def test_no_runs_is_an_error(store, experiment, tmp_path):
    with pytest.raises(RipuError, match=f"no finished runs in experiment {experiment} at "
                                        f".*; run the sweep first"):
        build_report(store["uri"], experiment=experiment, out_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_missing_store_file_is_an_error_and_creates_nothing(tmp_path):
    db = tmp_path / "absent.db"
    with pytest.raises(RipuError, match="no finished runs in experiment synthetic"):
        build_report(f"sqlite:///{db}", experiment="synthetic", out_dir=tmp_path / "out")
    assert not db.exists()


def write_params(root: Path, uri: str, experiment: str, out: str) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "params.yaml").write_text(yaml.safe_dump(
        {"tracking": {"uri": uri, "experiment": experiment}, "report": {"out": out}}))


def test_pipeline_main_resolves_relative_paths_against_root(store, synthetic, capsys,
                                                           monkeypatch, tmp_path):
    from pipelines.report import main

    root = store["root"]
    write_params(root, "sqlite:///mlflow.db", "synthetic", "reports_main")
    monkeypatch.setenv("RIPU_GIT_REVISION", "test")  # load_params would set it for good
    monkeypatch.chdir(tmp_path)  # the working directory plays no part
    assert main(root) == 0
    assert "report: 19 runs in 9 groups" in capsys.readouterr().out
    assert ((root / "reports_main" / "summary.md").read_bytes()
            == (synthetic["out"] / "summary.md").read_bytes())
    assert not list(tmp_path.iterdir())


@pytest.mark.slow  # a fresh interpreter imports torch, pandas and mlflow: ~5-15 s
def test_pipeline_module_resolves_paths_from_its_root(store, synthetic):
    """`python -m pipelines.report` from another folder: params.yaml, the relative SQLite
    URI and report.out are all taken relative to the folder holding the package."""
    root = store["root"]
    shutil.copytree(REPO / "pipelines", root / "pipelines",
                    ignore=shutil.ignore_patterns("__pycache__"))
    write_params(root, "sqlite:///mlflow.db", "synthetic", "reports_cli")
    elsewhere = root / "elsewhere"
    elsewhere.mkdir()
    path = [str(root), str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
    proc = subprocess.run([sys.executable, "-m", "pipelines.report"], cwd=elsewhere, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "report: 19 runs in 9 groups" in proc.stdout
    assert ((root / "reports_cli" / "results.csv").read_bytes()
            == (synthetic["out"] / "results.csv").read_bytes())
    assert not list(elsewhere.iterdir())


def test_pipeline_main_exits_2_with_one_line(store, tmp_path, capsys, monkeypatch):
    from pipelines.report import main

    monkeypatch.setenv("RIPU_GIT_REVISION", "test")
    write_params(tmp_path, store["uri"], "empty", "out")
    assert main(tmp_path) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no finished runs in experiment empty" in err[0]
    (tmp_path / "params.yaml").write_text("report:\n  outt: x\n")
    assert main(tmp_path) == 2
    assert "report.outt: unknown key" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_runs_of_two_environments_are_named_in_one_line(tmp_path, capsys):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    for seed, lock in ((0, "a" * 64), (1, "a" * 64), (2, "b" * 64)):
        log_trial(uri, "envs", f"ra-{seed}", "active", "ripu_region", seed, 0.5,
                  tags={"ripu.lock_sha256": lock})
    info = build_report(uri, experiment="envs", out_dir=tmp_path / "out")
    results = pd.read_csv(tmp_path / "out" / "results.csv")
    assert list(results["lock_sha256"]) == ["a" * 64, "a" * 64, "b" * 64]
    assert info["environments"] == ("These runs come from 2 different environments (lock "
                                    "SHA-256: aaaaaaaaaaaa (2 runs), bbbbbbbbbbbb (1 runs)); "
                                    "differences between them may be the environment's.")
    assert info["environments"] in (tmp_path / "out" / "summary.md").read_text()


def test_runs_of_one_environment_say_nothing_about_it(synthetic):
    assert synthetic["info"]["environments"] is None
    assert "environments" not in synthetic["md"]
