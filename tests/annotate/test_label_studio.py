"""People in the loop against a real Label Studio server (see conftest.py): tasks pushed,
answered by a simulated annotator through the API, pulled back as the round's labels."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch

from ripu.annotate import AnnotateError, AwaitingLabels
from ripu.annotate.client import Studio
from ripu.annotate.people import round_selection
from ripu.annotate.pull import regions_of
from ripu.annotate.round_labels import labels_path, load_round_labels
from ripu.config import apply_overrides
from ripu.engine.build import build_datasets
from ripu.engine.trainer import run_trial
from ripu.engine.trial_dir import TrialDir
from ripu.tracking import free_port
from tests.annotate.conftest import REPO, annotate
from tests.conftest import tiny_config

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def people_config(tiny_data, tmp_path, server, **overrides):
    project = f"test-{uuid.uuid4().hex[:8]}"
    return tiny_config(tiny_data, tmp_path, **{"annotate.url": server.url,
                                               "annotate.project": project, **overrides})


def truth_of(cfg) -> dict[str, np.ndarray]:
    """Ground truth at the label state's resolution: the trainer's target labels."""
    target = build_datasets(cfg, only=["target"])["target"]
    return {target[i]["id"]: target[i]["label"].numpy().astype(np.uint8)
            for i in range(len(target))}


def project_id(server, cfg, trial_dir: Path) -> int:
    title = f"{cfg.annotate.project}/{trial_dir.name}"
    found = [p for p in Studio(server.url, server.token).pages("/api/projects")
             if p["title"] == title]
    assert len(found) == 1, title
    return found[0]["id"]


def first_round(server, tiny_data, tmp_path, **overrides):
    """A people trial pushed its round 0 and waits: cfg, trial folder, class names, ground
    truth, project id."""
    cfg = people_config(tiny_data, tmp_path, server, **overrides)
    out = tmp_path / "trial"
    names = build_datasets(cfg, only=["target"])["target"].class_names
    assert waiting_round(cfg, out) == 0
    return cfg, out, names, truth_of(cfg), project_id(server, cfg, out)


def waiting_round(cfg, out: Path) -> int:
    with pytest.raises(AwaitingLabels) as info:
        run_trial(cfg, out, resume=True, progress=False, callbacks=[])
    return info.value.round_index


def tasks_of(server, project: int) -> list[dict]:
    return Studio(server.url, server.token).call(
        "GET", f"/api/projects/{project}/export?exportType=JSON&download_all_tasks=true")


def test_annotated_round_labels_equal_ground_truth_on_selected_pixels(label_studio, tiny_data,
                                                                      tmp_path, capsys):
    cfg, out, names, truth, project = first_round(label_studio, tiny_data, tmp_path)
    selection = round_selection(TrialDir(out).masks_dir, 0)
    tasks = tasks_of(label_studio, project)
    assert sorted(t["data"]["ripu_image"] for t in tasks) == sorted(selection)
    # a second push (the stage run again before anyone labelled) duplicates nothing, nor
    # does a push cut after the server took the tasks and before the ledger recorded them
    ledger = TrialDir(out).masks_dir / "tasks_0.json"
    recorded = json.loads(ledger.read_text())
    assert recorded == {"tasks": {t["data"]["ripu_image"]: t["id"] for t in tasks}, "refused": {}}
    assert waiting_round(cfg, out) == 0
    ledger.unlink()
    assert waiting_round(cfg, out) == 0
    assert len(tasks_of(label_studio, project)) == len(tasks)
    assert json.loads(ledger.read_text()) == recorded
    summary = annotate(label_studio, project, 0, truth, names, tmp_path, "--outside", "7")
    assert summary["answered"] == len(tasks) and summary["outside"] == 7 * len(tasks)
    assert waiting_round(cfg, out) == 1  # round 0 pulled, trained on, round 1 pushed
    labels, header = load_round_labels(labels_path(TrialDir(out).masks_dir, 0))
    assert sorted(labels) == sorted(selection)
    for image_id, sel in selection.items():
        np.testing.assert_array_equal(labels[image_id], np.where(sel, truth[image_id], 255))
    assert header["pixels_outside"] == 7 * len(tasks)
    assert header["pixels_labelled"] == sum(int((truth[i][s] != 255).sum())
                                            for i, s in selection.items())
    assert header["done"] == len(tasks) and header["deleted"] == []
    line = [x for x in capsys.readouterr().out.splitlines() if x.startswith("round 0 labels")]
    assert line and f"{7 * len(tasks)} painted outside the regions (ignored)" in line[0]
    # pulling again changes nothing (the closed round is read, not pulled)
    before = labels_path(TrialDir(out).masks_dir, 0).read_bytes()
    assert waiting_round(cfg, out) == 1
    assert labels_path(TrialDir(out).masks_dir, 0).read_bytes() == before


@pytest.mark.parametrize("strategy", ["ripu_region", "ripu_point"])
def test_two_annotated_rounds_equal_the_ground_truth_oracle_bit_for_bit(label_studio, tiny_data,
                                                                        tmp_path, strategy):
    """Round 1 is selected by the model trained on round 0's imported labels; with a
    perfect annotator the trial equals the oracle's: results, weights and round files.
    Regions (RA) and points (PA) alike."""
    cfg = people_config(tiny_data, tmp_path, label_studio, **{"active.strategy": strategy})
    people, oracle = tmp_path / "people", tmp_path / "oracle"
    names = build_datasets(cfg, only=["target"])["target"].class_names
    truth = truth_of(cfg)
    for r in (0, 1):
        assert waiting_round(cfg, people) == r
        annotate(label_studio, project_id(label_studio, cfg, people), r, truth, names, tmp_path)
    got = run_trial(cfg, people, resume=True, progress=False, callbacks=[])
    plain = apply_overrides(cfg, {"annotate.url": None})
    want = run_trial(plain, oracle, progress=False, callbacks=[])
    drop = {"seconds", "resume_hash"}
    assert {k: v for k, v in got.items() if k not in drop} == \
        {k: v for k, v in want.items() if k not in drop}
    a = torch.load(TrialDir(people).checkpoint, weights_only=False)["model"]
    b = torch.load(TrialDir(oracle).checkpoint, weights_only=False)["model"]
    assert all(torch.equal(a[k], b[k]) for k in b)
    for r in (0, 1):
        assert TrialDir(people).round_file(r).read_bytes() == \
            TrialDir(oracle).round_file(r).read_bytes()


def test_wrong_labels_change_what_round_1_selects(label_studio, tiny_data, tmp_path):
    """Round 1's selection depends on round 0's imported labels (not on the oracle's)."""
    cfg, out, names, truth, project = first_round(label_studio, tiny_data, tmp_path,
                                                  **{"optim.lr": 0.05})
    oracle = tmp_path / "oracle"
    wrong = [a for i in truth for a in ("--wrong", i)]
    annotate(label_studio, project, 0, truth, names, tmp_path, *wrong)
    assert waiting_round(cfg, out) == 1
    run_trial(apply_overrides(cfg, {"annotate.url": None}), oracle, progress=False, callbacks=[])
    assert TrialDir(out).round_file(0).read_bytes() == TrialDir(oracle).round_file(0).read_bytes()
    assert TrialDir(out).round_file(1).read_bytes() != TrialDir(oracle).round_file(1).read_bytes()


def test_annotation_edits_skips_and_deleted_tasks(label_studio, tiny_data, tmp_path, capsys):
    cfg, out, names, truth, project = first_round(label_studio, tiny_data, tmp_path)
    tasks = sorted(tasks_of(label_studio, project), key=lambda t: t["data"]["ripu_image"])
    first, second, third = (t["data"]["ripu_image"] for t in tasks[:3])
    studio = Studio(label_studio.url, label_studio.token)
    studio.call("DELETE", f"/api/tasks/{tasks[2]['id']}")
    annotate(label_studio, project, 0, truth, names, tmp_path, "--wrong", first,
             "--skip", second)
    annotate(label_studio, project, 0, truth, names, tmp_path, "--edit", "--only", first)
    # one task fewer on the server, not pushed again
    assert waiting_round(cfg, out) == 1
    assert len([t for t in tasks_of(label_studio, project) if t["data"]["ripu_round"] == 0]) \
        == len(tasks) - 1
    labels, header = load_round_labels(labels_path(TrialDir(out).masks_dir, 0))
    sel = round_selection(TrialDir(out).masks_dir, 0)
    np.testing.assert_array_equal(labels[first], np.where(sel[first], truth[first], 255))
    assert (labels[second] == 255).all() and third not in labels
    assert header["deleted"] == [third] and header["skipped"] == 1
    # the skipped and the deleted task's regions are all left unlabelled
    gone = regions_of(sel[second])[0] + regions_of(sel[third])[0]
    assert header["regions"] == sum(regions_of(m)[0] for m in sel.values())
    assert header["regions_unlabelled"] >= gone >= 2
    text = capsys.readouterr().out
    assert f"1 deleted in Label Studio ({third})" in text
    # an annotation changed after its round closed is reported once, recorded, not used
    annotate(label_studio, project, 0, truth, names, tmp_path, "--edit", "--only", first,
             "--wrong", first)
    assert waiting_round(cfg, out) == 1
    assert f"(image {first}) of round 0, changed after round 0 closed; not used" in \
        capsys.readouterr().out
    ledger = json.loads((TrialDir(out).masks_dir / "tasks_0.json").read_text())
    assert len(ledger["refused"]) == 1
    assert waiting_round(cfg, out) == 1
    assert "changed after round 0 closed" not in capsys.readouterr().out


def test_a_trial_started_afresh_pulls_its_rounds_again_and_keeps_the_earlier_labels(
        label_studio, tiny_data, tmp_path):
    """A people trial that starts afresh (its checkpoint gone, or another start or config)
    sets the earlier attempt's labels and ledgers aside in masks/earlier/<n>/, never reads
    them as its own: the same selection gets the same answers back from the server, another
    selection is refused there with one line."""
    cfg, out, names, truth, project = first_round(label_studio, tiny_data, tmp_path)
    masks = TrialDir(out).masks_dir
    annotate(label_studio, project, 0, truth, names, tmp_path)
    assert waiting_round(cfg, out) == 1
    pulled, _ = load_round_labels(labels_path(masks, 0))
    TrialDir(out).checkpoint.unlink()  # nothing to resume: the same config starts afresh
    assert waiting_round(cfg, out) == 1  # round 0 pulled again from the same tasks
    again, _ = load_round_labels(labels_path(masks, 0))
    assert sorted(again) == sorted(pulled)
    assert all(np.array_equal(again[i], pulled[i]) for i in pulled)
    first = masks / "earlier" / "1"
    assert sorted(f.name for f in first.iterdir()) == ["labels_0.npz", "tasks_0.json",
                                                       "tasks_1.json"]
    assert load_round_labels(first / "labels_0.npz")[0].keys() == pulled.keys()
    other = apply_overrides(cfg, {"seed": 1})  # another config, the same folder and project
    with pytest.raises(AnnotateError, match="belongs to another selection of round 0"):
        run_trial(other, out, progress=False, callbacks=[])
    assert not labels_path(masks, 0).exists()
    assert (masks / "earlier" / "2" / "labels_0.npz").is_file()


@pytest.mark.parametrize(("option", "message"), [
    (("--rename", "road=street"), "unknown class name ['street']"),
    (("--size", "99x7"), "labels outside the image (drawn on a 99x7 image"),
])
def test_annotate_refuses_bad_labels_and_writes_nothing(label_studio, tiny_data, tmp_path,
                                                        option, message):
    cfg, out, names, truth, project = first_round(label_studio, tiny_data, tmp_path)
    if option[0] == "--rename":  # make sure some task holds a road pixel in its regions
        sel = round_selection(TrialDir(out).masks_dir, 0)
        truth = {i: np.where(sel.get(i, False), 0, t).astype(np.uint8) for i, t in truth.items()}
    annotate(label_studio, project, 0, truth, names, tmp_path, *option)
    with pytest.raises(AnnotateError, match=message.replace("[", r"\[").replace("]", r"\]")
                       .replace("(", r"\(")):
        run_trial(cfg, out, resume=True, progress=False, callbacks=[])
    assert not labels_path(TrialDir(out).masks_dir, 0).exists()


def run_stage_env(server_url: str, token: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "LABEL_STUDIO_TOKEN"}
    if token is not None:
        env["LABEL_STUDIO_TOKEN"] = token
    return env


@pytest.mark.parametrize("case", ["down", "wrong token"])
def test_annotate_server_down_or_wrong_token_is_one_line_and_exit_2(label_studio, tiny_data,
                                                                    tmp_path, case):
    url = f"http://127.0.0.1:{free_port()}" if case == "down" else label_studio.url
    cfg = people_config(tiny_data, tmp_path, label_studio, **{"annotate.url": url})
    params = tmp_path / "params.yaml"
    from ripu.config import dump_yaml
    params.write_text(dump_yaml(cfg))
    out = tmp_path / "trial"
    done = subprocess.run([sys.executable, "-m", "ripu", "train", "--params", str(params),
                           "--out", str(out)], cwd=REPO, capture_output=True, text=True,
                          env=run_stage_env(url, "0" * 40), timeout=300)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1
    assert ("is not reachable" if case == "down" else "refused the token") in lines[0]
    assert "0" * 40 not in done.stderr + done.stdout
    assert not out.exists()
