"""Experiment files: grid expansion, trial names, validation before anything runs, search."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ripu.cli import main as cli_main
from ripu.config import load_config
from ripu.errors import ConfigError
from ripu.experiments import expand_grid, load_experiment

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def base_cfg():
    return load_config(REPO / "params.yaml")


def write(tmp_path: Path, spec: dict, name: str = "exp.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


PAPER_GRID = [
    {"train.kind": ["source_only", "supervised"], "seed": [0, 1, 2]},
    {"train.kind": ["active"], "active.strategy": ["ripu_region", "random_region"],
     "active.budget": [0.01, 0.022, 0.05], "seed": [0, 1, 2]},
    {"train.kind": ["active"], "active.strategy": ["ripu_point"], "seed": [0, 1, 2]},
]


def test_grid_expansion_counts_names_and_configs(tmp_path, base_cfg):
    path = write(tmp_path, {"name": "demo", "base": {"optim.iters": 100}, "grid": PAPER_GRID})
    exp = load_experiment(path, base_cfg)
    assert exp.name == "demo" and exp.search is None
    assert len(exp.trials) == 6 + 18 + 3
    names = [t.name for t in exp.trials]
    assert len(set(names)) == len(names)
    # Block order, last key varying fastest.
    assert names[:4] == ["source_only-s0", "source_only-s1", "source_only-s2", "supervised-s0"]
    assert {"active-ripu_region-b0.022-s0", "active-random_region-b0.01-s2",
            "active-ripu_point-p40-s0", "active-ripu_region-b0.05-s1"} <= set(names)
    t = exp.trial("active-random_region-b0.05-s2")
    assert (t.cfg.train.kind, t.cfg.active.strategy, t.cfg.active.budget, t.cfg.seed) == (
        "active", "random_region", 0.05, 2)
    assert t.overrides == {"optim.iters": 100, "train.kind": "active",
                           "active.strategy": "random_region", "active.budget": 0.05, "seed": 2}
    # Base applies everywhere; the MLflow experiment is the file's name; other keys untouched.
    assert all(tr.cfg.optim.iters == 100 for tr in exp.trials)
    assert all(tr.cfg.tracking.experiment == "demo" for tr in exp.trials)
    assert all(tr.cfg.loss == base_cfg.loss for tr in exp.trials)
    # Deterministic.
    assert [t.name for t in load_experiment(path, base_cfg).trials] == names


def test_expand_grid_scalars_and_products():
    points = expand_grid([{"a.x": [1, 2], "b.y": "z"}, {"a.x": [3]}], Path("f.yaml"))
    assert points == [{"a.x": 1, "b.y": "z"}, {"a.x": 2, "b.y": "z"}, {"a.x": 3}]
    with pytest.raises(ConfigError, match=r"f.yaml: grid\[0\].a.x: empty list"):
        expand_grid([{"a.x": []}], Path("f.yaml"))
    with pytest.raises(ConfigError, match="grid: expected a non-empty list"):
        expand_grid({"a.x": [1]}, Path("f.yaml"))


def test_names_show_every_other_varied_key(tmp_path, base_cfg):
    grid = [{"train.kind": ["active"], "active.strategy": ["ripu_region"],
             "active.radius": [1, 2], "loss.nl": [0.5], "seed": [0]}]
    exp = load_experiment(write(tmp_path, {"name": "r", "grid": grid}), base_cfg)
    assert [t.name for t in exp.trials] == ["active-ripu_region-b0.022-radius1-nl0.5-s0",
                                            "active-ripu_region-b0.022-radius2-nl0.5-s0"]
    assert [t.cfg.active.radius for t in exp.trials] == [1, 2]


def test_same_point_twice_is_an_error(tmp_path, base_cfg):
    grid = [{"train.kind": ["source_only"], "seed": [0]}, {"train.kind": ["source_only"]}]
    with pytest.raises(ConfigError, match="both named 'source_only-s0'"):
        load_experiment(write(tmp_path, {"name": "d", "grid": grid}), base_cfg)


@pytest.mark.parametrize("spec, where", [
    ({"name": "x", "grid": [{"active.nope": [1]}]}, "active.nope"),
    ({"name": "x", "base": {"optim.itres": 5}, "grid": [{"seed": [0]}]}, "optim.itres"),
    ({"name": "x", "grid": [{"nosection.key": [1]}]}, "nosection"),
    ({"name": "x", "grid": [{"active.budget": [2.0]}]}, "active.budget: 2.0 is out of range"),
    ({"name": "x", "grid": [{"active.strategy": ["best"]}]}, "active.strategy: unknown strategy"),
    ({"name": "x", "grid": [{"tracking.uri": ["sqlite:///a.db"]}]}, "tracking.uri"),
    ({"name": "x", "grid": [{"seed": [0]}], "extra": 1}, "extra: unknown key"),
    ({"name": "a b", "grid": [{"seed": [0]}]}, "name: expected a folder-safe name"),
    ({"name": "x"}, "exactly one of grid"),
])
def test_bad_files_name_the_file_and_key(tmp_path, base_cfg, spec, where):
    path = write(tmp_path, spec)
    with pytest.raises(ConfigError) as info:
        load_experiment(path, base_cfg)
    assert str(path) in str(info.value) and where in str(info.value)


def test_missing_and_broken_files(tmp_path, base_cfg):
    with pytest.raises(ConfigError, match="experiment file not found"):
        load_experiment(tmp_path / "none.yaml", base_cfg)
    broken = tmp_path / "broken.yaml"
    broken.write_text("grid: [unclosed\n")
    with pytest.raises(ConfigError, match="broken YAML"):
        load_experiment(broken, base_cfg)
    broken.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_experiment(broken, base_cfg)


def test_relative_paths_resolved_against_root(tmp_path, base_cfg):
    path = write(tmp_path, {"name": "p", "base": {"data.source_root": "data/gta5"},
                            "grid": [{"seed": [0]}]})
    trial = load_experiment(path, base_cfg, root=tmp_path).trials[0]
    assert trial.cfg.data.source_root == str(tmp_path / "data" / "gta5")
    assert load_experiment(path, base_cfg).trials[0].cfg.data.source_root == "data/gta5"


SEARCH = {"num_samples": 6, "metric": "val/miou", "mode": "max", "seed": 3,
          "scheduler": {"name": "asha", "grace_period": 10, "reduction_factor": 2},
          "space": {"active.radius": {"choice": [1, 2]}, "loss.nl": {"loguniform": [0.1, 2.0]}}}


def test_search_samples_are_seeded_valid_and_named(tmp_path, base_cfg):
    spec = {"name": "s", "base": {"train.eval_every": 5}, "search": SEARCH}
    exp = load_experiment(write(tmp_path, spec), base_cfg)
    assert exp.search.num_samples == 6 and exp.search.scheduler == {
        "name": "asha", "grace_period": 10, "reduction_factor": 2}
    assert len(exp.trials) == 6
    for i, t in enumerate(exp.trials):
        assert t.name.startswith(f"{i:03d}-active-ripu_region-b0.022-")
        assert t.cfg.active.radius in (1, 2) and 0.1 <= t.cfg.loss.nl <= 2.0
        assert t.name.endswith(f"-radius{t.cfg.active.radius}-nl{t.cfg.loss.nl:.4g}-s0")
        assert t.cfg.train.eval_every == 5
    assert len({t.cfg.loss.nl for t in exp.trials}) == 6
    again = load_experiment(write(tmp_path, spec, "again.yaml"), base_cfg)
    assert [t.overrides for t in again.trials] == [t.overrides for t in exp.trials]
    other = load_experiment(write(tmp_path, {**spec, "search": {**SEARCH, "seed": 4}},
                                  "other.yaml"), base_cfg)
    assert [t.overrides for t in other.trials] != [t.overrides for t in exp.trials]


@pytest.mark.parametrize("change, message", [
    ({"space": {"loss.nl": {"gaussian": [0, 1]}}}, "unknown sampler 'gaussian'"),
    ({"space": {"loss.nl": {"loguniform": [2.0]}}}, "search.space.loss.nl.loguniform: bad"),
    ({"space": {"loss.bad": {"choice": [1]}}}, "loss.bad: unknown key"),
    ({"space": {"loss.nl": {"choice": [-1.0]}}}, "loss.nl: -1.0 is out of range"),
    ({"mode": "best"}, "search.mode: expected min or max"),
    ({"scheduler": {"name": "pbt"}}, "unknown scheduler 'pbt'"),
    ({"scheduler": {"name": "asha", "grace": 3}}, "search.scheduler.grace: unknown option"),
    ({"num_samples": 0}, "search.num_samples: expected a positive integer"),
    ({"seed": -1}, "search.seed: expected a non-negative integer, got -1"),
    ({"metric": ""}, "search.metric: expected a metric name such as val/miou, got ''"),
    ({"bogus": 1}, "search.bogus: unknown key, expected one of num_samples, metric, mode, seed"),
    ({"scheduler": {"name": "asha", "grace_period": 0}},
     "search.scheduler.grace_period: expected a positive number, got 0"),
    ({"scheduler": 3}, "search.scheduler: expected a mapping, got 3"),
    ({"space": {}}, "search.space: expected at least one key to search"),
    ({"space": {"loss.nl": {"choice": 1}}}, "search.space.loss.nl.choice: expected a list"),
    ({"space": {"tracking.uri": {"choice": ["a"]}}}, "search.space.tracking.uri: tracking"),
])
def test_bad_search_sections(tmp_path, base_cfg, change, message):
    spec = {"name": "s", "base": {"train.eval_every": 5}, "search": {**SEARCH, **change}}
    with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("(", r"\(")):
        load_experiment(write(tmp_path, spec), base_cfg)


def test_asha_needs_evaluations_while_training(tmp_path, base_cfg):
    spec = {"name": "s", "base": {"train.eval_every": 0}, "search": SEARCH}
    with pytest.raises(ConfigError, match="train.eval_every > 0"):
        load_experiment(write(tmp_path, spec), base_cfg)


@pytest.mark.parametrize("file, count, name", [
    ("synthetic.yaml", 58, "synthetic"),
    ("synthetic_v4.yaml", 61, "synthetic_v4"),
    ("gta5_to_cityscapes.yaml", 10, "gta5_to_cityscapes"),
    ("synthia_to_cityscapes.yaml", 10, "synthia_to_cityscapes"),
    ("search_asha.yaml", 8, "search_asha"),
])
def test_shipped_experiment_files_are_valid(base_cfg, file, count, name):
    exp = load_experiment(REPO / "experiments" / file, base_cfg, root=REPO)
    assert exp.name == name and len(exp.trials) == count


def test_paper_files_carry_the_papers_settings(base_cfg):
    gta = load_experiment(REPO / "experiments" / "gta5_to_cityscapes.yaml", base_cfg, root=REPO)
    syn = load_experiment(REPO / "experiments" / "synthia_to_cityscapes.yaml", base_cfg,
                          root=REPO)
    assert {t.cfg.data.num_classes for t in gta.trials} == {19}
    assert {t.cfg.data.num_classes for t in syn.trials} == {16}
    ra = gta.trial("active-ripu_region-b0.022-archdeeplabv2-s0").cfg
    assert (ra.optim.lr, ra.optim.iters, ra.optim.poly_iters) == (0.00025, 40000, 62500)
    assert (ra.optim.batch_source, ra.optim.batch_target) == (2, 2)
    assert ra.active.round_at == [0.25, 0.30, 0.35, 0.40, 0.45]
    assert ra.data.source_size == (1280, 720) and ra.data.target_size == (1280, 640)
    # The dataset roots are the machine's: the params file's (experiments/<name>/params.yaml).
    assert ra.data.target_root == base_cfg.data.target_root
    pa = gta.trial("active-ripu_point-p40-radius32-s0").cfg
    assert (pa.active.points, pa.active.radius) == (40, 32)
    sf = [t.cfg for t in gta.trials if t.cfg.train.kind == "source_free"][0]
    assert (sf.active.radius, sf.optim.iters) == (9, 30000)


@pytest.mark.parametrize("file, source_size", [("gta5_to_cityscapes.yaml", (1280, 720)),
                                               ("synthia_to_cityscapes.yaml", (1280, 760))])
def test_lse_rows_as_the_lse_authors_ran_them(base_cfg, file, source_size):
    """VGG16-FCN8s from the FCN8s warm-up: Adam 1e-6 (biases 2e-6), betas (0.9, 0.99), no
    decay, fixed rate, batch 1 + 1, CE + 0.1 focal (gamma 3), BGR minus Caffe means, 7
    rounds, their sizes (MNaseerSubhani/LSE, docs/fidelity.md)."""
    exp = load_experiment(REPO / "experiments" / file, base_cfg, root=REPO)
    (t,) = [t for t in exp.trials if t.cfg.model.arch == "vgg16_fcn8s"]
    c = t.cfg
    assert t.init == "fcn8s_source_only" and c.train.kind == "lse" and len(t.name) <= 240
    assert (c.optim.name, c.optim.lr, c.optim.bias_lr_mult, c.optim.head_lr_mult) == (
        "adam", 1e-6, 2.0, 1.0)
    assert (c.optim.betas, c.optim.weight_decay, c.optim.poly_power) == ((0.9, 0.99), 0.0, 0.0)
    assert (c.optim.batch_source, c.optim.batch_target) == (1, 1)
    assert (c.loss.source_ce, c.loss.target_ce, c.loss.focal, c.loss.focal_gamma) == (
        1.0, 1.0, 0.1, 3.0)
    assert (c.lse.rounds, c.lse.p_base, c.lse.p_step, c.lse.patches, c.lse.epochs) == (
        7, 0.10, 0.05, 4, 2)
    assert (c.data.normalize, c.data.source_size, c.data.target_size, c.data.eval_size) == (
        "caffe_bgr", source_size, (1024, 512), (1024, 512))
    assert (c.data.class_balance, c.train.eval_flip, c.model.pretrained) == (False, False, None)
    w = exp.warmups["fcn8s_source_only"].cfg
    assert (w.train.kind, w.model.arch, w.data.normalize, w.optim.name, w.optim.betas) == (
        "source_only", "vgg16_fcn8s", "caffe_bgr", "adam", (0.9, 0.99))
    assert w.model.pretrained == str(REPO / "models" / "vgg16_imagenet.pth")
    assert w.data.source_size == source_size and w.optim.batch_source == 1


def test_long_trial_names_are_cut_with_a_hash(tmp_path, base_cfg):
    keys = {f"loss.{k}": [0.125] for k in ("source_ce", "target_ce", "lc", "nl", "focal")}
    grid = [{"train.kind": ["source_only"], "optim.lr": [v], **keys, "optim.momentum": [0.5],
             "optim.weight_decay": [0.25], "data.source_size": [[1234, 567]],
             "data.target_size": [[1234, 567]], "data.eval_size": [[1234, 567]],
             "optim.batch_source": [3], "optim.head_lr_mult": [7.5], "optim.poly_power": [0.5],
             "lse.p_base": [0.125], "lse.p_step": [0.0625], "lse.patches": [3],
             "lse.epochs": [3], "lse.scale": [3], "active.batch_size": [3], "seed": [0]}
            for v in (0.001, 0.002)]
    exp = load_experiment(write(tmp_path, {"name": "long", "grid": grid}), base_cfg)
    a, b = (t.name for t in exp.trials)
    assert len(a) == len(b) == 240 and a != b and a[:200] == b[:200]
    assert a == load_experiment(write(tmp_path, {"name": "long", "grid": grid}), base_cfg
                                ).trials[0].name


def test_cli_unknown_key_exits_2_before_writing(tmp_path, capsys):
    bad = write(tmp_path, {"name": "x", "grid": [{"active.nope": [1]}]})
    out = tmp_path / "runs"
    code = cli_main(["sweep", "--params", str(REPO / "params.yaml"), "--experiment", str(bad),
                     "--out", str(out), "-q"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert str(bad) in err[0] and "active.nope" in err[0]
    assert not out.exists()
