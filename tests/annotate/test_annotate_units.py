"""Brush code, answers and round-label files without a server (hand-built tasks)."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from ripu.annotate.client import AnnotateError, read_token
from ripu.annotate.interface import brush, label_config
from ripu.annotate.pull import answer
from ripu.annotate.rle import decode_mask, decode_values, encode_mask, encode_values
from ripu.annotate.round_labels import load_round_labels, merge_rounds, save_round_labels
from ripu.config import AnnotateConfig, Config, params_hash, to_dict
from ripu.errors import RipuError

NAMES = ("road", "sidewalk", "building")


def test_annotate_rle_header_and_one_run_by_hand():
    # 3 values of 7: count 3 (32 bits), word size 8-1 (5), sizes 3,4,8,16 -1 (4 x 4), then
    # one repeat chunk: 1, size index 0, length 3-1 in 3 bits, the word 7 -> 69 bits.
    bits = (f"{3:032b}" + f"{7:05b}" + "0010" + "0011" + "0111" + "1111"
            + "1" + "00" + "010" + f"{7:08b}")
    bits += "0" * (-len(bits) % 8)
    assert encode_values(np.array([7, 7, 7], np.uint8)) == \
        list(int(bits, 2).to_bytes(len(bits) // 8, "big"))
    np.testing.assert_array_equal(decode_values(encode_values(np.array([7, 7, 7]))), [7, 7, 7])


def test_annotate_rle_round_trip_and_literal_chunks():
    rng = np.random.default_rng(0)
    mask = rng.random((9, 70)) < 0.4
    np.testing.assert_array_equal(decode_mask(encode_mask(mask), 9, 70), mask)
    # a literal chunk (repeat flag 0) of three words 1, 2, 3
    bits = f"{3:032b}" + f"{7:05b}" + "0010001101111111" + "0" + "00" + "010" + \
        "".join(f"{v:08b}" for v in (1, 2, 3))
    bits += "0" * (-len(bits) % 8)
    np.testing.assert_array_equal(
        decode_values(list(int(bits, 2).to_bytes(len(bits) // 8, "big"))), [1, 2, 3])
    with pytest.raises(RipuError, match="expected 9x7"):
        decode_mask(encode_mask(mask), 9, 7)


def task_with(*annotations):
    return {"id": 5, "data": {"ripu_image": "a"}, "annotations": list(annotations)}


def test_annotate_answer_keeps_selected_pixels_of_the_newest_annotation():
    selected = np.zeros((4, 6), bool)
    selected[0:2, 0:2] = True
    selected[3, 5] = True  # a second region, left unpainted
    road = np.zeros((4, 6), bool)
    road[0:3, 0:3] = True  # 4 pixels inside, 5 outside
    old = {"id": 1, "updated_at": "2026-01-01T00:00:00Z",
           "result": [brush("label", "building", selected)]}
    new = {"id": 2, "updated_at": "2026-01-02T00:00:00Z",
           "result": [brush("regions", "to label", selected), brush("label", "road", road)]}
    got = answer(task_with(new, old), selected, NAMES)
    want = np.full((4, 6), 255, np.uint8)
    want[0:2, 0:2] = 0
    np.testing.assert_array_equal(got.labels, want)
    assert (got.labelled, got.outside, got.regions, got.regions_unlabelled) == (4, 5, 2, 1)
    assert got.annotation["id"] == 2
    skipped = answer(task_with({"id": 3, "updated_at": "2026-01-03T00:00:00Z",
                                "was_cancelled": True, "result": []}, new), selected, NAMES)
    assert skipped.skipped and (skipped.labels == 255).all()
    assert answer(task_with(), selected, NAMES).annotation is None


def test_annotate_answer_refuses_unknown_classes_and_other_sizes():
    selected = np.ones((4, 6), bool)
    with pytest.raises(AnnotateError, match=r"task 5 \(image a\): unknown class name \['car'\]"):
        answer(task_with({"id": 1, "result": [brush("label", "car", selected)]}), selected,
               NAMES)
    with pytest.raises(AnnotateError, match="labels outside the image"):
        answer(task_with({"id": 1, "result": [brush("label", "road", np.ones((5, 6), bool))]}),
               selected, NAMES)


def test_annotate_round_labels_file_round_trip_and_merge(tmp_path):
    a = np.full((3, 4), 255, np.uint8)
    a[0, 0] = 2
    b = np.full((3, 4), 255, np.uint8)
    b[2, 3] = 1
    path = save_round_labels(tmp_path / "labels_0.npz", {"x/1": a}, {"round": 0})
    labels, header = load_round_labels(path)
    np.testing.assert_array_equal(labels["x/1"], a)
    assert header == {"round": 0}
    merged = merge_rounds([{"x/1": a}, {"x/1": b}])["x/1"]
    assert merged[0, 0] == 2 and merged[2, 3] == 1 and (merged == 255).sum() == 10


def test_annotate_token_from_env_or_file_never_from_params(tmp_path, monkeypatch):
    env = "LS_TEST_TOKEN"
    monkeypatch.delenv(env, raising=False)
    cfg = AnnotateConfig(url="http://127.0.0.1:1", token_env=env)
    with pytest.raises(AnnotateError, match=r"no Label Studio token in \$LS_TEST_TOKEN"):
        read_token(cfg)
    (tmp_path / "token").write_text("abc\n")
    assert read_token(AnnotateConfig(token_env=env,
                                     token_file=str(tmp_path / "token"))) == "abc"
    monkeypatch.setenv(env, "xyz")
    assert read_token(cfg) == "xyz"
    assert "token" not in AnnotateConfig.__pydantic_fields__  # no place for it in params


def test_annotate_oracle_default_keeps_the_params_hash():
    """The optional section at its defaults leaves every existing trial's hash unchanged."""
    cfg = Config()
    people = Config(annotate=AnnotateConfig(url="http://127.0.0.1:8080"))
    without = {k: v for k, v in to_dict(cfg).items() if k != "annotate"}
    assert params_hash(cfg) == \
        hashlib.sha256(json.dumps(without, sort_keys=True).encode()).hexdigest()[:12]
    assert params_hash(cfg) != params_hash(people)


def test_annotate_label_config_has_every_class_in_cityscapes_colours():
    xml = label_config(NAMES)
    assert '<Label value="road" background="#804080"/>' in xml
    assert '<Label value="building" background="#464646"/>' in xml
    assert 'name="regions"' in xml and 'value="to label"' in xml


def test_annotate_round_cost_of_the_paper_budget():
    """2.2% of a 1024x2048 label over 5 rounds: ceil(2097152 x 0.0044 / 9) = 1026 regions."""
    from ripu.annotate.cost import round_cost

    assert round_cost(0.022, (1024, 2048)) == (1026, 9234, 2097152)
    assert round_cost(0.01, (64, 128)) == (2, 18, 8192)


def test_annotate_report_line_counts_skipped_and_deleted_tasks():
    from ripu.annotate.pull import Answer
    from ripu.annotate.report import report_line, round_report

    lab = np.full((2, 2), 255, np.uint8)
    answers = {"a": Answer(lab, {"id": 1}, labelled=3, outside=2, regions=4,
                           regions_unlabelled=1),
               "b": Answer(lab, {"id": 2}, skipped=True, regions=2, regions_unlabelled=2)}
    assert report_line(round_report(0, answers, ["c"])) == (
        "round 0 labels: 1 of 3 tasks done (1 skipped, 1 deleted in Label Studio (c)), "
        "3 pixels labelled, 2 painted outside the regions (ignored), 3 of 6 regions left "
        "unlabelled")
