"""No pipeline drifts from its protocol: every trial's resolved config equals the protocol
except in the keys its files declare.

A pipeline is a params file (``params.yaml``, ``experiments/<name>/params.yaml``) and the
experiment file it names. Its *protocol* is the default ``params.yaml`` when its params file
derives from it (``base``), else Config's defaults (the paper pipelines, whose experiment
files hold the paper's settings). A trial may differ from its protocol only in the keys of
its experiment file (``base`` and the trial's grid point) and in what a params file holds for
the machine or the pipeline itself (``OWN``: paths, the server, tracking, resources); a
params file that derives from the default holds nothing else. Warm-ups of a pipeline on the
default protocol equal the default experiment's of the same name.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ripu.config import Config, flatten, load_config, read_yaml
from ripu.experiments import Experiment, load_experiment

REPO = Path(__file__).resolve().parents[1]
DEFAULT = REPO / "params.yaml"
PEOPLE = REPO / "experiments" / "people" / "params.yaml"
PIPELINES = [DEFAULT, *sorted(REPO.glob("experiments/*/params.yaml"))]
# what a params file may set for the machine or the pipeline itself (keys, section prefixes):
# the data it generates (synth) and where, the server, tracking, resources
OWN = ("annotate.", "tracking.", "sweep.", "report.", "synth.", "data.source_root",
       "data.target_root", "model.pretrained", "train.device")


def name(p: Path) -> str:
    return str(p.relative_to(REPO))


def derived(params: Path) -> bool:
    return params == DEFAULT or "base" in read_yaml(params)


def protocol(params: Path) -> Config:
    return load_config(DEFAULT) if derived(params) else Config()


def experiment(params: Path) -> Experiment:
    cfg = load_config(params)
    return load_experiment(REPO / cfg.sweep.experiment, cfg)


def differ(a: Config, b: Config) -> set[str]:
    """The keys whose values differ between two configs, less the pipeline's own."""
    fa, fb = flatten(a), flatten(b)
    return {k for k in fa.keys() | fb.keys() if fa.get(k) != fb.get(k) and not k.startswith(OWN)}


def protocol_keys_set(params: Path) -> set[str]:
    """Keys a derived params file sets that are not its own (should be none)."""
    raw = {k: v for k, v in read_yaml(params).items() if k != "base"}
    keys = {f"{s}.{k}" for s, body in raw.items() if isinstance(body, dict) for k in body}
    keys |= {s for s, body in raw.items() if not isinstance(body, dict)}
    return {k for k in keys if not k.startswith(OWN)}


def undeclared(params: Path) -> dict[str, set[str]]:
    """Per trial, the keys that differ from the protocol without being declared."""
    base = protocol(params)
    found = {t.name: differ(t.cfg, base) - set(t.overrides) for t in experiment(params).trials}
    return {trial: keys for trial, keys in found.items() if keys}


def warmup_drift(params: Path) -> dict[str, set[str]]:
    """Per warm-up, the keys that differ from the default experiment's of the same name."""
    default = experiment(DEFAULT).warmups
    found = {w: differ(warm.cfg, default[w].cfg) if w in default else {"(no such warm-up)"}
             for w, warm in experiment(params).warmups.items()}
    return {w: keys for w, keys in found.items() if keys}


@pytest.mark.parametrize("params", [p for p in PIPELINES if p != DEFAULT and derived(p)],
                         ids=name)
def test_config_drift_derived_params_files_hold_only_their_own_keys(params):
    assert protocol_keys_set(params) == set()
    assert warmup_drift(params) == {}


@pytest.mark.parametrize("params", PIPELINES, ids=name)
def test_config_drift_every_trial_is_its_protocol_but_for_declared_keys(params):
    assert undeclared(params) == {}


def test_config_drift_people_pipeline_is_the_default_protocol():
    """The people trial is the default sweep's trial of the same grid point from the same
    warm-up: they differ only in the people pipeline's own keys."""
    people, default = experiment(PEOPLE), experiment(DEFAULT)
    assert derived(PEOPLE)
    for trial in people.trials:
        twin = next(t for t in default.trials if t.overrides == trial.overrides)
        assert twin.init == trial.init
        assert differ(trial.cfg, twin.cfg) == set()


def test_config_drift_is_caught(tmp_path):
    """A people params file with a training key of its own, a trial whose config differs
    where nothing declares it, and a warm-up that is not the default's all fail."""
    folder = tmp_path / "experiments" / "people"
    folder.mkdir(parents=True)
    (tmp_path / "params.yaml").write_text(DEFAULT.read_text())
    people = folder / "params.yaml"
    stale = PEOPLE.read_text() + "optim:\n  lr: 0.03\n"
    people.write_text(stale)
    assert load_config(people).optim.lr == 0.03
    assert protocol_keys_set(people) == {"optim.lr"}
    assert differ(load_config(people), load_config(DEFAULT)) == {"optim.lr"}
    with pytest.MonkeyPatch.context() as mp:  # the checks above, on the tampered copy
        mp.setattr(f"{__name__}.DEFAULT", tmp_path / "params.yaml")
        (tmp_path / "experiments" / "people.yaml").write_text(
            (REPO / "experiments/people.yaml").read_text().replace("data.flip: true",
                                                                   "data.flip: false"))
        (tmp_path / "experiments" / "synthetic.yaml").write_text(
            (REPO / "experiments/synthetic.yaml").read_text())
        mp.chdir(tmp_path)
        mp.setattr(f"{__name__}.REPO", tmp_path)
        assert list(undeclared(people).values()) == [{"optim.lr"}]
        assert warmup_drift(people) == {"source_only": {"data.flip"}}


def test_config_drift_base_merges_sections_key_by_key_and_refuses_cycles(tmp_path):
    """A derived file's section keys replace the base's one by one; a key's value, a mapping
    too, is replaced whole (an empty warmup_files clears the base's); a cycle, a missing base
    and a base that is not a path are one-line ConfigErrors."""
    from ripu.config import read_params
    from ripu.errors import ConfigError

    (tmp_path / "a.yaml").write_text(
        "seed: 3\noptim: {lr: 0.5, iters: 9}\nsweep: {warmup_files: {x: m.pt}, max_failures: 4}\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.yaml").write_text(
        "base: ../a.yaml\noptim: {lr: 0.25}\nsweep: {warmup_files: {}}\n")
    assert read_params(tmp_path / "sub" / "b.yaml") == {
        "seed": 3, "optim": {"lr": 0.25, "iters": 9},
        "sweep": {"warmup_files": {}, "max_failures": 4}}
    assert load_config(tmp_path / "sub" / "b.yaml").optim.iters == 9
    (tmp_path / "a.yaml").write_text("base: sub/b.yaml\nseed: 1\n")
    with pytest.raises(ConfigError, match="derives from itself"):
        read_params(tmp_path / "sub" / "b.yaml")
    (tmp_path / "c.yaml").write_text("base: missing.yaml\n")
    with pytest.raises(ConfigError, match="missing.yaml: params file not found"):
        read_params(tmp_path / "c.yaml")
    (tmp_path / "d.yaml").write_text("base: [1]\n")
    with pytest.raises(ConfigError, match=r"d.yaml: base: expected the path of a params file"):
        read_params(tmp_path / "d.yaml")
