"""Bad input is refused cleanly: exit status 2, one line on stderr naming what is wrong and
what was expected, and nothing written or overwritten (issue "Reliability", part 1).

Every case runs the real command line (``ripu.cli.main``) in-process with fd-level capture,
so C libraries' output and logging count too; a representative subset also runs as
``python -m ripu`` in a fresh interpreter (every case in the slow suite). Each case works in
its own folder holding a copy of the tiny dataset, a valid params file, a finished trial
folder and an empty working directory; afterwards that folder must be byte- and mtime-identical
(the datasets' class-list cache, a derived file beside the source labels, aside).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from PIL import Image

from ripu.config import dump_yaml
from tests.conftest import tiny_config

CACHE = ".class_lists.json"  # class-list cache written beside the source labels (not output)
TARGET_LABEL = "target/gtFine/train/aachen/aachen_000000_000019_gtFine_labelIds.png"
TARGET_IMAGE = "target/leftImg8bit/train/bochum/bochum_000001_000019_leftImg8bit.png"
VAL_LABEL = "target/gtFine/val/lindau/lindau_000000_000019_gtFine_labelIds.png"
SOURCE_IMAGE = "source/images/00002.png"
SOURCE_LABEL = "source/labels/00003.png"


@dataclass
class World:
    """One case's folder: ``data`` (a tiny dataset copy), ``params`` (valid), ``trial`` (a
    finished trial), ``cwd`` (empty working directory), ``out`` (a trial folder to create)."""

    root: Path

    data = property(lambda self: self.root / "data")
    params = property(lambda self: self.root / "params.yaml")
    trial = property(lambda self: self.root / "trial")
    cwd = property(lambda self: self.root / "cwd")
    out = property(lambda self: self.root / "new-trial")
    db = property(lambda self: self.root / "mlflow.db")

    def write(self, name: str, text: str | bytes) -> Path:
        path = self.root / name
        path.write_bytes(text.encode() if isinstance(text, str) else text)
        return path

    def train(self, *args: str, out: Path | None = None) -> list[str]:
        return ["train", "-q", "--params", str(self.params), "--out", str(out or self.out), *args]


def snapshot(root: Path) -> dict[str, tuple[int, int, str]]:
    """{relative path: (size, mtime_ns, sha1)} of every file under ``root`` (folders: their
    names only, since a folder's mtime moves with the class-list cache)."""
    out = {}
    for path in sorted(root.rglob("*")):
        if path.name == CACHE:
            continue
        if path.is_dir():
            out[path.relative_to(root).as_posix()] = (0, 0, "dir")
            continue
        st = path.stat()
        digest = hashlib.sha1(path.read_bytes()).hexdigest()
        out[path.relative_to(root).as_posix()] = (st.st_size, st.st_mtime_ns, digest)
    return out


@pytest.fixture(scope="module")
def finished_trial(tiny_data, tmp_path_factory) -> Path:
    """A finished 4-iteration active trial (checkpoint, two round files, results.json)."""
    from ripu.engine.trainer import run_trial

    tmp = tmp_path_factory.mktemp("finished")
    cfg = tiny_config(tiny_data, tmp, **{"optim.iters": 4, "optim.poly_iters": 4})
    run_trial(cfg, tmp / "trial", progress=False, callbacks=[])
    return tmp / "trial"


@pytest.fixture
def world(tiny_data, finished_trial, tmp_path) -> World:
    w = World(tmp_path)
    shutil.copytree(tiny_data, w.data, ignore=shutil.ignore_patterns(CACHE))
    shutil.copytree(finished_trial, w.trial)
    w.cwd.mkdir()
    w.params.write_text(dump_yaml(tiny_config(w.data, tmp_path)))
    return w


# ----------------------------------------------------------------------------- damage


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def put_label_id(path: Path, value: int) -> None:
    """Write raw id ``value`` into one pixel of a label PNG (mode and palette kept)."""
    with Image.open(path) as img:
        img.load()
    img.putpixel((3, 2), value)
    img.save(path)


def checkpoint(w: World, num_classes: int, name: str = "other.pt") -> Path:
    from ripu.models import build_model

    path = w.root / name
    torch.save({"model": build_model("small", num_classes).state_dict()}, path)
    return path


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def experiment(w: World, text: str) -> list[str]:
    path = w.write("exp.yaml", text)
    return ["sweep", "-q", "--params", str(w.params), "--experiment", str(path),
            "--out", str(w.root / "runs")]


# ----------------------------------------------------------------------------- cases


@dataclass(frozen=True)
class Case:
    id: str
    argv: Callable[[World], list[str]]  # prepares the world, returns the command line
    expect: tuple[str, ...]  # substrings of the single error line
    subprocess: bool = False  # also as `python -m ripu` in the default suite


def S(*overrides: str) -> Callable[[World], list[str]]:  # noqa: N802 - reads like -S
    """``ripu train`` on the valid params with ``-S`` overrides."""
    return lambda w: w.train(*[a for o in overrides for a in ("-S", o)])


def params_text(text: str | bytes) -> Callable[[World], list[str]]:
    def argv(w: World) -> list[str]:
        w.write("params.yaml", text)
        return w.train()
    return argv


def damaged(action: Callable[[Path], None], rel: str, command: str = "train",
            into_trial: bool = False) -> Callable[[World], list[str]]:
    def argv(w: World) -> list[str]:
        action(w.data / rel)
        if command == "check":
            return ["data", "check", "-q", "--params", str(w.params)]
        return w.train(out=w.trial if into_trial else None)
    return argv


def with_init(make: Callable[[World], Path], *extra: str) -> Callable[[World], list[str]]:
    return lambda w: w.train("--init", str(make(w)), *extra)


VALID_PARAMS = "seed: 0\noptim: {lr: 0.01, momentm: 0.9}\n"

CASES = [
    # --- unknown keys, at any depth
    Case("unknown-top-key", S("colour=red"), ("colour: unknown key", "expected one of")),
    Case("unknown-section-key", S("active.nope=1"), ("active.nope: unknown key", "expected"),
         subprocess=True),
    Case("key-below-a-value", S("active.budget.max=1"),
         ("active.budget: is a value, not a section", "active.budget.max", "expected")),
    Case("unknown-key-in-file", params_text(VALID_PARAMS),
         ("optim.momentm: unknown key", "expected one of", "momentum")),
    # --- wrong types
    Case("int-got-string", S("optim.iters=abc"), ("optim.iters: expected an integer", "'abc'")),
    Case("int-got-float", S("active.rounds=2.5"), ("active.rounds: expected an integer", "2.5")),
    Case("number-got-bool", S("optim.lr=true"), ("optim.lr: expected a number", "True")),
    Case("bool-got-int", S("data.flip=3"), ("data.flip: expected true or false", "3")),
    Case("pair-got-one", S("data.source_size=[64]"),
         ("data.source_size: expected a list of 2 values", "[64]")),
    Case("pair-got-strings", S("data.eval_size=[a, b]"),
         ("data.eval_size[0]: expected an integer", "'a'")),
    Case("list-got-number", S("active.round_at=0.5"), ("active.round_at: expected a list",)),
    Case("section-got-number", S("optim=5"), ("optim: expected a mapping", "5")),
    Case("string-got-list", S("tracking.experiment=[1]"),
         ("tracking.experiment: expected a string",)),
    Case("num-classes-20", S("data.num_classes=20"),
         ("data.num_classes: expected one of 19, 16", "20")),
    Case("override-without-value", S("active.budget"),
         ("active.budget", "expected section.key=value")),
    # --- out-of-range values
    Case("budget-zero", S("active.budget=0"), ("active.budget: 0.0 is out of range", "(0, 1]")),
    Case("budget-above-one", S("active.budget=1.5"),
         ("active.budget: 1.5 is out of range", "(0, 1]")),
    Case("zero-rounds", S("active.rounds=0"), ("active.rounds: 0 is out of range", "[1, inf)")),
    Case("zero-iterations", S("optim.iters=0"), ("optim.iters: 0 is out of range", "[1, inf)")),
    Case("zero-lse-rounds", S("lse.rounds=0"), ("lse.rounds: 0 is out of range", "expected")),
    Case("negative-radius", S("active.radius=-1"),
         ("active.radius: -1 is out of range", "[0, inf)")),
    Case("zero-points", S("active.points=0"), ("active.points: 0 is out of range", "expected")),
    Case("zero-lr", S("optim.lr=0"), ("optim.lr: 0.0 is out of range", "(0, inf)")),
    Case("momentum-above-one", S("optim.momentum=1.5"), ("optim.momentum: 1.5 is out of range",
                                                         "[0, 1]")),
    Case("nl-threshold-zero", S("loss.nl_threshold=0"), ("loss.nl_threshold: 0.0 is out of range",
                                                         "(0, 1]")),
    Case("negative-seed", S("seed=-1"), ("seed: -1 is out of range", "[0, inf)")),
    Case("negative-weight", S("loss.lc=-0.1"), ("loss.lc: -0.1 is out of range", "[0, inf)")),
    Case("zero-cpus-per-trial", S("sweep.cpus_per_trial=0"),
         ("sweep.cpus_per_trial: 0.0 is out of range", "(0, inf)")),
    Case("round-at-count", S("active.round_at=[0.0]"), ("active.round_at: expected 2 values",)),
    Case("round-at-decreasing", S("active.round_at=[0.5, 0.1]"),
         ("active.round_at: expected increasing fractions",)),
    Case("iters-beyond-schedule", S("optim.iters=100"), ("optim.iters: 100 exceeds", "expected")),
    # --- params files
    Case("empty-params", params_text(""),
         ("params.yaml: file is empty", "expected a YAML mapping")),
    Case("broken-yaml", params_text("optim: [1, 2\n"), ("params.yaml: broken YAML", "expected")),
    Case("binary-params", params_text(b"\xff\xfe\x00\x81garbage"),
         ("params.yaml: broken YAML", "expected")),
    Case("params-a-list", params_text("- seed\n- optim\n"),
         ("params.yaml: expected a mapping of sections, got list",)),
    Case("params-a-scalar", params_text("42\n"), ("expected a mapping of sections, got int",)),
    Case("missing-params", lambda w: ["train", "-q", "--params", str(w.root / "nope.yaml"),
                                      "--out", str(w.out)],
         ("nope.yaml: params file not found", "expected an existing YAML file")),
    # --- unknown names
    Case("unknown-strategy", S("active.strategy=magic"),
         ("active.strategy: unknown strategy 'magic'", "expected one of", "ripu_region")),
    Case("unknown-dataset", S("data.source=kitti"), ("data.source: expected one of", "'kitti'")),
    Case("unknown-target-dataset", S("data.target=acdc"), ("data.target: expected one of", "acdc")),
    Case("unknown-model", S("model.arch=unet"), ("model.arch: expected one of", "'unet'")),
    Case("unknown-backbone", S("model.backbone=vgg16"), ("model.backbone: expected one of",)),
    Case("unknown-trial-kind", S("train.kind=magic"), ("train.kind: expected one of", "'magic'")),
    Case("unknown-device", S("train.device=warp9"),
         ("train.device: unknown device 'warp9'", "expected auto, cpu")),
    Case("synthia-with-19-classes", S("data.source=synthia"),
         ("synthia: num_classes must be 16, got 19", "expected")),
    Case("missing-pretrained-weights", lambda w: w.train("-S", "model.arch=deeplabv2", "-S",
                                                         f"model.pretrained={w.root}/r101.pth"),
         ("pretrained weights file", "r101.pth does not exist", "expected ImageNet")),
    # --- datasets
    Case("missing-target-root", lambda w: w.train("-S", f"data.target_root={w.root}/nowhere"),
         ("data.target_root: Cityscapes root not found", "expected a directory", "nowhere")),
    Case("missing-source-root", lambda w: w.train("-S", f"data.source_root={w.root}/nowhere"),
         ("data.source_root: GTA5 root not found", "expected a directory")),
    Case("missing-val-split", damaged(shutil.rmtree, "target/gtFine/val"),
         ("data.target_root: Cityscapes val labels folder not found", "expected a directory")),
    Case("count-mismatch", damaged(Path.unlink, TARGET_LABEL),
         ("data.target_root", "6 images under", "but 5 labels", "expected one label per image")),
    Case("image-without-label", damaged(lambda p: p.rename(p.with_name("x" + p.name)),
                                        TARGET_LABEL),
         ("data.target_root", "aachen_000000_000019_leftImg8bit.png has no label", "expected")),
    Case("truncated-target-label", damaged(truncate, TARGET_LABEL),
         ("data.target_root", "aachen_000000_000019_gtFine_labelIds.png is truncated",
          "expected a complete PNG"), subprocess=True),
    Case("truncated-target-image", damaged(truncate, TARGET_IMAGE),
         ("data.target_root", "bochum_000001_000019_leftImg8bit.png is truncated",
          "expected a complete PNG")),
    Case("truncated-source-image", damaged(truncate, SOURCE_IMAGE),
         ("data.source_root", "00002.png is truncated", "expected a complete PNG")),
    Case("truncated-val-label-check", damaged(truncate, VAL_LABEL, "check"),
         ("data.target_root", "lindau_000000_000019_gtFine_labelIds.png is truncated")),
    Case("png-that-is-text", damaged(lambda p: p.write_text("not a png"), SOURCE_LABEL),
         ("data.source_root", "00003.png is truncated or not a PNG", "expected")),
    Case("label-id-200-target", damaged(lambda p: put_label_id(p, 200), TARGET_LABEL),
         ("aachen_000000_000019_gtFine_labelIds.png: unexpected label id 200",
          "expected ids 0..33")),
    Case("label-id-200-val", damaged(lambda p: put_label_id(p, 200), VAL_LABEL),
         ("lindau_000000_000019_gtFine_labelIds.png: unexpected label id 200", "expected ids")),
    Case("label-id-40-source", damaged(lambda p: put_label_id(p, 40), SOURCE_LABEL),
         ("00003.png: unexpected label id 40", "expected ids 0..34")),
    Case("label-id-40-source-cached", lambda w: _cache_then_damage(w),
         ("00003.png: unexpected label id 40", "expected ids 0..34")),
    Case("label-id-200-check", damaged(lambda p: put_label_id(p, 200), TARGET_LABEL, "check"),
         ("unexpected label id 200", "expected ids")),
    Case("missing-root-over-finished-trial",
         lambda w: w.train("-S", f"data.target_root={w.root}/nowhere", out=w.trial),
         ("data.target_root: Cityscapes root not found",)),
    Case("truncated-png-over-finished-trial", damaged(truncate, TARGET_IMAGE, into_trial=True),
         ("is truncated",)),
    # --- checkpoints
    Case("init-16-classes", with_init(lambda w: checkpoint(w, 16)),
         ("other.pt: checkpoint has 16 classes, the model expects 19", "data.num_classes")),
    Case("init-missing", with_init(lambda w: w.root / "warmup.pt"),
         ("warmup.pt: checkpoint not found", "expected a .pt file")),
    Case("init-garbage", with_init(lambda w: w.write("junk.pt", b"\x80\x04junk")),
         ("junk.pt: unreadable checkpoint", "expected a file written by ripu"),
         subprocess=True),  # torch warns about such files: the warning must not show
    Case("init-truncated", with_init(lambda w: w.write(
        "cut.pt", (w.trial / "checkpoints" / "last.pt").read_bytes()[:5000])),
         ("cut.pt: unreadable checkpoint", "expected")),
    Case("init-pickled-code", with_init(lambda w: _pickled_code(w)),
         ("evil.pt: unreadable checkpoint (UnpicklingError)", "expected")),
    Case("init-into-finished-trial", lambda w: w.train("--init", str(checkpoint(w, 16)),
                                                       out=w.trial),
         ("checkpoint has 16 classes",)),
    Case("evaluate-16-classes", lambda w: ["evaluate", "-q", "--params", str(w.params),
                                           "--checkpoint", str(checkpoint(w, 16))],
         ("checkpoint has 16 classes, the model expects 19",)),
    Case("evaluate-missing-checkpoint", lambda w: ["evaluate", "-q", "--params", str(w.params),
                                                   "--checkpoint", str(w.root / "x.pt")],
         ("x.pt: checkpoint not found", "expected")),
    Case("select-16-classes", lambda w: ["select", "-q", "--params", str(w.params),
                                         "--checkpoint", str(checkpoint(w, 16)),
                                         "--masks", str(w.root / "masks")],
         ("checkpoint has 16 classes",)),
    Case("select-round-gap", lambda w: ["select", "-q", "--params", str(w.params),
                                        "--checkpoint", str(w.trial / "checkpoints" / "last.pt"),
                                        "--masks", str(w.trial / "masks"), "--round", "5"],
         ("--round 5: the last complete round", "is 1, expected --round 2")),
    Case("export-not-a-round-file", lambda w: ["export", "-q", "--params", str(w.params),
                                               str(w.write("round_0.npz", "text")),
                                               "--out", str(w.out)],
         ("round_0.npz: cannot read round file", "expected a round_<r>.npz")),
    Case("resume-changed-config", lambda w: [
        "train", "-q", "--params", str(w.trial / "config.yaml"), "--out", str(w.trial),
        "--resume", "-S", "active.budget=0.03", "-S", f"tracking.uri=sqlite:///{w.db}"],
         ("--resume", "was started with another config", "expected the same params"),
         subprocess=True),
    Case("resume-corrupt-checkpoint", lambda w: [
        "train", "-q", "--params", str(w.trial / "config.yaml"), "--out", str(_cut_last(w)),
        "--resume", "-S", f"tracking.uri=sqlite:///{w.db}"],
         ("unreadable checkpoint", "expected a file written by ripu")),
    # --- tracking
    Case("mlflow-unreachable", lambda w: w.train("-S", f"tracking.uri=http://127.0.0.1:"
                                                       f"{closed_port()}"),
         ("tracking.uri: cannot reach http://127.0.0.1:", "expected a running MLflow server"),
         subprocess=True),
    Case("mlflow-sqlite-folder-missing", S("tracking.uri=sqlite:////nonexistent/dir/mlflow.db"),
         ("tracking.uri: folder /nonexistent/dir", "expected a writable folder")),
    Case("mlflow-unknown-scheme", S("tracking.uri=ftp://example.org/store"),
         ("tracking.uri: unsupported URI 'ftp://example.org/store'", "expected sqlite:///")),
    # --- experiment files (ripu sweep)
    Case("experiment-unknown-top-key", lambda w: experiment(
        w, "name: bad\ngrid:\n  - {seed: [0, 1]}\nbogus: 1\n"),
         ("exp.yaml", "bogus: unknown key", "expected one of")),
    Case("experiment-unknown-param", lambda w: experiment(
        w, "name: bad\ngrid:\n  - {active.budgets: [0.1]}\n"),
         ("exp.yaml", "active.budgets", "unknown key")),
    Case("experiment-budget-out-of-range", lambda w: experiment(
        w, "name: bad\ngrid:\n  - {active.budget: [0.1, 2.0]}\n"),
         ("exp.yaml", "active.budget", "out of range", "(0, 1]")),
    Case("experiment-missing", lambda w: ["sweep", "-q", "--params", str(w.params),
                                          "--experiment", str(w.root / "none.yaml")],
         ("none.yaml: experiment file not found", "expected")),
    Case("experiment-broken-yaml", lambda w: experiment(w, "name: [bad\n"),
         ("exp.yaml", "broken YAML", "expected")),
    # a sweep whose trials could never run is refused before Ray starts
    Case("sweep-missing-dataset", lambda w: [
        *experiment(w, "name: bad\ngrid:\n  - {seed: [0]}\n"), "-S",
        f"data.target_root={w.root}/nowhere"], ("data.target_root", "nowhere", "expected")),
    Case("sweep-init-other-classes", lambda w: [
        *experiment(w, "name: bad\ngrid:\n  - {seed: [0]}\n"), "-S", "data.num_classes=16",
        "--init", str(w.trial / "checkpoints" / "last.pt")],
         ("checkpoint has 19 classes, the model expects 16",)),
]


def _pickled_code(w: World) -> Path:
    """A checkpoint whose unpickling would call a function: refused with weights_only=True."""
    path = w.root / "evil.pt"
    torch.save({"model": {}, "hook": print}, path)
    return path


def _cache_then_damage(w: World) -> list[str]:
    """Build the source class-list cache, then damage a source label: the cache is stale, so
    the labels are read (and checked) again."""
    from ripu.data import GTA5Dataset
    from ripu.data.sampling import class_image_lists

    class_image_lists(GTA5Dataset(w.data / "source"), w.data / "source" / CACHE, progress=False)
    put_label_id(w.data / SOURCE_LABEL, 40)
    return w.train()


def _cut_last(w: World) -> Path:
    last = w.trial / "checkpoints" / "last.pt"
    data = last.read_bytes()
    last.write_bytes(data[: len(data) // 3])
    return w.trial


# ----------------------------------------------------------------------------- runners


def run_in_process(argv: list[str], cwd: Path, capfd, monkeypatch) -> tuple[int, str, str]:
    from ripu.cli import main

    monkeypatch.chdir(cwd)
    capfd.readouterr()
    rc = main(argv)
    out, err = capfd.readouterr()
    return rc, out, err


def run_subprocess(argv: list[str], cwd: Path) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if k != "TQDM_DISABLE"}
    proc = subprocess.run([sys.executable, "-m", "ripu", *argv], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)
    return proc.returncode, proc.stdout, proc.stderr


def check_refused(case: Case, w: World, run: Callable[[list[str]], tuple[int, str, str]]) -> None:
    argv = case.argv(w)  # damages the world first where the case says so
    before = snapshot(w.root)
    rc, out, err = run(argv)
    lines = err.strip().splitlines()
    assert rc == 2, (rc, err)
    assert len(lines) == 1, err
    assert lines[0].startswith("ripu: error: "), lines[0]
    for text in case.expect:
        assert text in lines[0], (text, lines[0])
    if argv[:2] != ["data", "check"]:  # which sets passed before the bad one: fine
        assert out == ""
    assert snapshot(w.root) == before  # nothing written, nothing overwritten
    assert not w.out.exists() and not w.db.exists() and not any(w.cwd.iterdir())


IDS = [c.id for c in CASES]


def test_cases_are_many_and_distinct():
    assert len(CASES) >= 60 and len(set(IDS)) == len(IDS)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_refused_in_process(case, world, capfd, monkeypatch):
    check_refused(case, world, lambda argv: run_in_process(argv, world.cwd, capfd, monkeypatch))


@pytest.mark.integration
@pytest.mark.parametrize("case", [pytest.param(c, marks=() if c.subprocess else pytest.mark.slow)
                                  for c in CASES], ids=IDS)
def test_refused_by_the_command(case, world):
    check_refused(case, world, lambda argv: run_subprocess(argv, world.cwd))


def test_valid_world_is_accepted(world, capfd, monkeypatch):
    """The control: the same params and dataset copy pass `ripu data check` and
    `ripu config check`, so each case fails only by its own damage."""
    for argv in (["data", "check", "-q", "--params", str(world.params)],
                 ["config", "check", "-q", "--params", str(world.params)]):
        rc, out, err = run_in_process(argv, world.cwd, capfd, monkeypatch)
        assert rc == 0, err


def test_label_fault_found_during_training_leaves_no_results(tiny_data, tmp_path):
    """Without class balancing the source labels are first read in training: the error still
    names the file and what was expected, and no results.json or temporary file is left."""
    from ripu.engine.trainer import run_trial
    from ripu.errors import DatasetError

    data = tmp_path / "data"
    shutil.copytree(tiny_data, data, ignore=shutil.ignore_patterns(CACHE))
    for label in sorted((data / "source" / "labels").glob("*.png")):
        put_label_id(label, 40)
    cfg = tiny_config(data, tmp_path, **{"data.class_balance": False})
    with pytest.raises(DatasetError, match=r"unexpected label id 40 \(expected ids 0..34\)"):
        run_trial(cfg, tmp_path / "trial", progress=False, callbacks=[])
    left = {p.relative_to(tmp_path / "trial").as_posix() for p in (tmp_path / "trial").rglob("*")}
    assert "results.json" not in left and not any(n.split("/")[-1].startswith(".") for n in left)
