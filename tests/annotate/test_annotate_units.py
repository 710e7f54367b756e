"""Brush code, answers and round-label files without a server (hand-built tasks)."""

from __future__ import annotations

import hashlib
import io
import json

import numpy as np
import pytest
from PIL import Image

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
    skip = {"id": 3, "updated_at": "2026-01-03T00:00:00Z", "was_cancelled": True, "result": []}
    skipped = answer(task_with(skip), selected, NAMES)
    assert skipped.skipped and (skipped.labels == 255).all() and skipped.annotation is None
    assert skipped.regions_unlabelled == 2
    # a later skip (another annotator's) does not take the answer away
    assert answer(task_with(skip, new), selected, NAMES).annotation["id"] == 2
    assert answer(task_with(), selected, NAMES).labels is None  # not answered yet


def test_annotate_blank_newer_annotations_never_replace_the_answer():
    """A blank annotation ("+", submitted empty) and one holding only the regions layer are
    newer than the answer: both are counted as empty and ignored."""
    from ripu.annotate.report import report_line, round_report

    selected = np.zeros((4, 6), bool)
    selected[1:4, 1:4] = True  # one region of 9 pixels
    road = np.zeros((4, 6), bool)
    road[1, 1:4] = True  # 3 of its pixels
    good = {"id": 1, "updated_at": "2026-01-01T00:00:00Z",
            "result": [brush("regions", "to label", selected), brush("label", "road", road)]}
    blank = {"id": 2, "updated_at": "2026-01-02T00:00:00Z", "result": []}
    regions_only = {"id": 3, "updated_at": "2026-01-03T00:00:00Z",
                    "result": [brush("regions", "to label", selected)]}
    got = answer(task_with(regions_only, blank, good), selected, NAMES)
    assert got.annotation["id"] == 1 and (got.labelled, got.empty) == (3, 2)
    np.testing.assert_array_equal(got.labels, np.where(road, 0, 255))
    only_blank = answer(task_with(blank), selected, NAMES)  # answered, nothing painted
    assert only_blank.labels is not None and (only_blank.labels == 255).all()
    assert not only_blank.skipped and (only_blank.empty, only_blank.regions_unlabelled) == (1, 1)
    assert report_line(round_report(0, {"a": got}, {})) == (
        "round 0 labels: 1 of 1 tasks done (0 skipped), 2 empty annotations ignored (a), "
        "3 pixels labelled, 0 painted outside the regions (ignored), 0 of 1 regions left "
        "unlabelled")


def test_annotate_stroke_on_the_upscaled_image_lands_on_the_right_label_pixels():
    """A 2x3 label state shown 4x larger (an 8x12 task image): a label pixel is painted when
    a stroke covers at least half of its 4x4 square."""
    selected = np.ones((2, 3), bool)
    stroke = np.zeros((8, 12), bool)
    stroke[0:4, 4:8] = True  # all 16 pixels of label pixel (0, 1)
    stroke[4:6, 0:4] = True  # 8 of 16 of (1, 0): half, painted
    stroke[7, 8:12] = True  # 4 of 16 of (1, 2): not painted
    stroke[3, 8:11] = True  # 3 of 16 of (0, 2): not painted
    got = answer(task_with({"id": 1, "result": [brush("label", "building", stroke)]}),
                 selected, NAMES)
    np.testing.assert_array_equal(got.labels, [[255, 2, 255], [2, 255, 255]])
    with pytest.raises(AnnotateError, match="labels outside the image"):  # not a multiple
        answer(task_with({"id": 1, "result": [brush("label", "road", np.ones((8, 13), bool))]}),
               selected, NAMES)


def test_annotate_task_image_is_upscaled_with_outlined_regions_and_maps_back_exactly():
    from ripu.annotate.display import downscale, outline, scale, upscale
    from ripu.annotate.interface import REGION_RGB, png, task
    from ripu.annotate.rle import decode_mask

    assert (scale((128, 256)), scale((64, 128)), scale((32, 64)), scale((1024, 2048))) == \
        (4, 8, 16, 1)
    selected = np.zeros((128, 256), bool)
    selected[10:13, 20:23] = True  # a 3x3 region: 12x12 on the 1024x512 task image
    ring = outline(selected, 4)
    assert ring.shape == (512, 1024) and ring.sum() == 14 * 14 - 12 * 12  # 1 pixel wide
    assert not (ring & upscale(selected, 4)).any()
    predicted = np.full((128, 256), 2)
    predicted[11, 21] = 0
    made = task("t", 0, "a", "/data/x.png", selected, predicted, NAMES)
    results = made["predictions"][0]["result"]
    assert [(r["from_name"], r["value"]["brushlabels"], r["original_width"],
             r["original_height"], r["interactive_mode"]) for r in results] == [
        ("regions", ["to label"], 1024, 512, False), ("label", ["road"], 1024, 512, False),
        ("label", ["building"], 1024, 512, False)]
    road = downscale(decode_mask(results[1]["value"]["rle"], 512, 1024), 4)
    assert road.sum() == 1 and road[11, 21]
    assert downscale(decode_mask(results[2]["value"]["rle"], 512, 1024), 4).sum() == 8
    image = np.asarray(Image.open(io.BytesIO(png(np.zeros((64, 128, 3), np.uint8), selected))))
    assert image.shape == (512, 1024, 3)
    assert (image[ring] == REGION_RGB).all() and (image[~ring] == 0).all()


def test_annotate_region_colour_is_far_from_every_class_colour():
    """Cyan is 161.7 (RGB distance) from the nearest class colour, sky (70, 130, 180):
    sqrt(70^2 + 125^2 + 75^2); the yellow used before was 35.9 from traffic sign's."""
    from ripu.annotate.interface import COLOURS, REGION_COLOUR, REGION_RGB

    assert REGION_COLOUR == "#" + "".join(f"{c:02x}" for c in REGION_RGB)
    nearest = min(COLOURS.values(), key=lambda c: np.linalg.norm(np.subtract(c, REGION_RGB)))
    assert nearest == (70, 130, 180)
    assert np.linalg.norm(np.subtract(nearest, REGION_RGB)) == pytest.approx(161.71, abs=0.01)


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
    del without["train"]["infer_batch"]  # equal to active.batch_size: out of the hash too
    assert params_hash(cfg) == \
        hashlib.sha256(json.dumps(without, sort_keys=True).encode()).hexdigest()[:12]
    assert params_hash(cfg) != params_hash(people)


def test_annotate_label_config_has_every_class_in_cityscapes_colours():
    xml = label_config(NAMES)
    assert '<Label value="road" hotkey="1" background="#804080"/>' in xml
    assert '<Label value="building" hotkey="3" background="#464646"/>' in xml
    assert 'name="regions"' in xml and 'value="to label"' in xml


def test_annotate_round_cost_of_the_paper_budget():
    """2.2% of a 1024x2048 label over 5 rounds: ceil(2097152 x 0.0044 / 9) = 1026 regions."""
    from ripu.annotate.cost import round_cost

    assert round_cost(0.022, (1024, 2048)) == (1026, 9234, 2097152)
    assert round_cost(0.01, (64, 128)) == (2, 18, 8192)


def test_annotate_report_counts_deleted_tasks_regions_and_goes_to_metrics():
    from ripu.annotate.pull import Answer, unanswered
    from ripu.annotate.report import report_line, round_metrics, round_report

    lab = np.full((2, 2), 255, np.uint8)
    answers = {"a": Answer(lab, {"id": 1}, labelled=3, outside=2, regions=4,
                           regions_unlabelled=1, empty=1),
               "b": Answer(lab, None, skipped=True, regions=2, regions_unlabelled=2)}
    gone = np.zeros((5, 5), bool)
    gone[0, 0] = gone[4, 4] = gone[4, 3] = True  # two regions, both left unlabelled
    header = round_report(0, answers, {"c": unanswered(gone)})
    assert report_line(header) == (
        "round 0 labels: 1 of 3 tasks done (1 skipped, 1 deleted in Label Studio (c)), "
        "1 empty annotation ignored (a), 3 pixels labelled, 2 painted outside the regions "
        "(ignored), 5 of 8 regions left unlabelled")
    assert round_metrics(header) == {
        "people/tasks": 3.0, "people/done": 1.0, "people/skipped": 1.0, "people/deleted": 1.0,
        "people/empty": 1.0, "people/pixels_labelled": 3.0, "people/pixels_outside": 2.0,
        "people/regions": 8.0, "people/regions_unlabelled": 5.0}


def test_annotate_ledger_reads_its_earlier_form_and_keeps_refusals(tmp_path):
    from ripu.annotate.ledger import Ledger, read_ledger, write_ledger

    path = tmp_path / "tasks_0.json"
    assert read_ledger(path) == Ledger()
    path.write_text('{"x/1": 7}')
    assert read_ledger(path) == Ledger({"x/1": 7}, {})
    write_ledger(path, Ledger({"x/1": 7}, {"12": "2026-01-01T00:00:00Z"}))
    assert read_ledger(path).refused == {"12": "2026-01-01T00:00:00Z"}
    path.write_text("[1, 2]")
    with pytest.raises(RipuError, match="unreadable task ledger"):
        read_ledger(path)
