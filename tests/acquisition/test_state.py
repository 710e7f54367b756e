"""Label state: bit-exact round files, schema checks, resuming from the last complete round."""

import json

import numpy as np
import pytest

from ripu.acquisition import LabelState, latest_round
from ripu.acquisition.state import SCHEMA_VERSION, read_header
from ripu.errors import RipuError
from ripu.io import atomic_path


def make_state(seed=0, round_index=1) -> LabelState:
    rng = np.random.default_rng(seed)
    state = LabelState()
    for image_id, shape in [("aachen/aachen_000000", (5, 7)), ("bremen/b_1", (3, 3)),
                            ("z", (1, 13))]:
        labelled = rng.random(shape) < 0.3
        state.set_masks(image_id, labelled, labelled | (rng.random(shape) < 0.3))
    state.round_index = round_index
    state.round_stats = [{"round": r, "round_fraction": 0.1 * (r + 1)}
                         for r in range(round_index + 1)]
    return state


def assert_same(a: LabelState, b: LabelState) -> None:
    assert a.ids == b.ids and a.round_index == b.round_index
    assert a.round_stats == b.round_stats
    for image_id in a.ids:
        assert a.shape(image_id) == b.shape(image_id)
        assert np.array_equal(a.labelled[image_id], b.labelled[image_id])
        assert np.array_equal(a.blocked[image_id], b.blocked[image_id])
        assert b.labelled[image_id].dtype == np.bool_


def test_round_file_round_trip_is_bit_exact(tmp_path):
    state = make_state()
    path = state.save(tmp_path / "masks" / "round_1.npz")
    assert_same(state, LabelState.load(path))
    assert read_header(path)["schema_version"] == SCHEMA_VERSION
    assert [p.name for p in path.parent.iterdir()] == ["round_1.npz"]  # no temp file left


def test_empty_state_round_trip(tmp_path):
    loaded = LabelState.load(LabelState().save(tmp_path / "round_0.npz"))
    assert len(loaded) == 0 and loaded.round_index == -1 and loaded.labelled_fraction() == 0.0


def write_npz(path, header_dict, **overrides):
    arrays = {"header": np.array(json.dumps(header_dict)), "ids": np.array(["a"]),
              "shapes": np.array([[2, 2]]), "labelled": np.zeros(1, np.uint8),
              "blocked": np.zeros(1, np.uint8)}
    arrays.update(overrides)
    np.savez_compressed(path, **arrays)
    return path


GOOD_HEADER = {"schema_version": SCHEMA_VERSION, "round_index": 0, "round_stats": [],
               "num_images": 1}


def test_hand_written_file_loads(tmp_path):
    state = LabelState.load(write_npz(tmp_path / "round_0.npz", GOOD_HEADER,
                                      labelled=np.array([0b10010000], np.uint8)))
    assert state.labelled["a"].tolist() == [[True, False], [False, True]]


def test_schema_version_mismatch_is_an_error(tmp_path):
    path = write_npz(tmp_path / "round_0.npz", {**GOOD_HEADER, "schema_version": 2})
    with pytest.raises(RipuError, match="schema_version 2, expected 1"):
        LabelState.load(path)


@pytest.mark.parametrize("overrides,match", [
    ({"labelled": np.zeros(3, np.uint8)}, "mask bits"),
    ({"shapes": np.array([[2, 2], [1, 1]])}, "disagree"),
    ({"header": np.array("not json")}, "header"),
])
def test_corrupt_files_are_errors(tmp_path, overrides, match):
    path = write_npz(tmp_path / "round_0.npz", GOOD_HEADER, **overrides)
    with pytest.raises(RipuError, match=match):
        LabelState.load(path)


def test_unreadable_files_are_errors(tmp_path):
    (tmp_path / "junk.npz").write_bytes(b"not a zip file at all")
    with pytest.raises(RipuError, match="cannot read"):
        LabelState.load(tmp_path / "junk.npz")
    good = make_state().save(tmp_path / "round_0.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(good[: len(good) // 2])
    with pytest.raises(RipuError):
        LabelState.load(tmp_path / "cut.npz")
    with pytest.raises(RipuError, match="cannot read"):
        LabelState.load(tmp_path / "missing.npz")


def test_latest_round_ignores_temp_and_partial_files(tmp_path):
    assert latest_round(tmp_path / "nowhere") is None
    assert latest_round(tmp_path) is None
    make_state(round_index=0).save(tmp_path / "round_0.npz")
    make_state(round_index=1).save(tmp_path / "round_1.npz")
    # An interrupted write of round 2: the temporary file is left, the target never appears.
    with pytest.raises(KeyboardInterrupt), atomic_path(tmp_path / "round_2.npz") as tmp:
        tmp.write_bytes(make_state(round_index=2).save(tmp_path / "x.npz").read_bytes()[:50])
        (tmp_path / "x.npz").unlink()
        raise KeyboardInterrupt
    (tmp_path / ".round_3.npz.abc123.npz").write_bytes(b"partial")  # a crash's leftover
    (tmp_path / "round_4.npz").write_bytes(b"truncated")  # unreadable: not complete
    assert latest_round(tmp_path) == (1, tmp_path / "round_1.npz")


def test_latest_round_requires_the_header_to_name_the_round(tmp_path):
    make_state(round_index=0).save(tmp_path / "round_0.npz")
    make_state(round_index=0).save(tmp_path / "round_5.npz")  # mislabelled copy
    assert latest_round(tmp_path) == (0, tmp_path / "round_0.npz")


def test_labelled_fraction_and_counts():
    state = LabelState()
    a = np.zeros((4, 5), bool)
    a[0, :3] = True
    state.set_masks("a", a, a)
    state.set_masks("b", np.ones((2, 5), bool), np.ones((2, 5), bool))
    assert state.labelled_pixels() == 13 and state.total_pixels() == 30
    assert state.labelled_fraction() == pytest.approx(13 / 30)


def test_masks_for_unseen_ids_broadcast_to_nothing_labelled():
    state = make_state()
    masks = state.masks_for(["z", "new/image"])
    assert list(masks) == ["z", "new/image"]
    assert np.array_equal(masks["z"], state.labelled["z"])
    assert masks["new/image"].shape == () and not masks["new/image"]
    assert np.where(masks["new/image"], 1, np.full((2, 3), 7)).tolist() == [[7] * 3] * 2
    with pytest.raises(KeyError):
        masks["bremen/b_1"]


def test_copy_is_independent_and_masks_are_fresh_arrays():
    state = make_state()
    copy = state.copy()
    copy.set_masks("z", np.ones((1, 13), bool), np.ones((1, 13), bool))
    copy.round_stats[0]["round"] = 99
    assert not state.labelled["z"].all() and state.round_stats[0]["round"] == 0
    view = state.labelled["z"]
    view[:] = True
    assert not state.labelled["z"].all()


@pytest.mark.parametrize("labelled,blocked,match", [
    (np.zeros((2, 2), np.uint8), np.zeros((2, 2), bool), "bool"),
    (np.zeros((2, 2), bool), np.zeros((2, 3), bool), "differ"),
    (np.zeros(4, bool), np.zeros(4, bool), "bool"),
    (np.zeros((3, 3), bool), np.zeros((3, 3), bool), "earlier rounds"),
])
def test_set_masks_rejects_bad_masks(labelled, blocked, match):
    state = LabelState()
    state.set_masks("a", np.zeros((2, 2), bool), np.zeros((2, 2), bool))
    with pytest.raises(RipuError, match=match):
        state.set_masks("a", labelled, blocked)
