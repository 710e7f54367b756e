"""The people pipeline with a perfect simulated annotator, next to the oracle's trial.

    python experiments/people/simulate.py            # in the repository, a server running

Runs ``dvc repro experiments/people/dvc.yaml`` again and again; each time it stops waiting
for round r (exit 75), the simulated annotator (``tests/annotate/annotator.py``, in Label
Studio's environment ``$RIPU_LABEL_STUDIO_VENV``, default ``.venv-ls``) answers every task of
round r from the ground truth through the API, as a perfect annotator would. Then it trains
the same trial with the ground-truth oracle (``annotate.url: null``) from the same warm-up
and prints both mIoUs. Needs ``$LABEL_STUDIO_TOKEN`` and the server at ``annotate.url``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

PIPELINE = "experiments/people/dvc.yaml"
PARAMS = "experiments/people/params.yaml"
WAITING = "exited with 75"


def truth_file(root: Path, out: Path) -> tuple[Path, list[str]]:
    """The trainer's target labels (the label state's size) as annotator.py reads them."""
    from pipelines.common import load_params
    from ripu.engine.build import build_datasets

    target = build_datasets(load_params(root, PARAMS), only=["target"])["target"]
    ids = list(target.ids)
    np.savez(out, ids=np.array(ids), names=np.array(list(target.class_names)),
             **{f"m{k}": target[k]["label"].numpy().astype(np.uint8) for k in range(len(ids))})
    return out, ids


def project_of(url: str, title: str) -> int:
    from ripu.annotate.client import Studio

    studio = Studio(url, os.environ["LABEL_STUDIO_TOKEN"])
    return next(p["id"] for p in studio.pages("/api/projects") if p["title"] == title)


def main() -> None:
    root = Path.cwd()
    sys.path.insert(0, str(root))
    from pipelines.common import load_experiment_of, load_params

    cfg = load_params(root, PARAMS)
    (trial,) = load_experiment_of(root, cfg).trials
    ls_python = Path(os.environ.get("RIPU_LABEL_STUDIO_VENV", root / ".venv-ls")) / "bin/python"
    annotator = root / "tests" / "annotate" / "annotator.py"
    truth = None
    for r in range(cfg.active.rounds + 1):
        done = subprocess.run(["dvc", "repro", PIPELINE], capture_output=True, text=True)
        print(done.stdout[-600:] + done.stderr[-600:], flush=True)
        if done.returncode == 0:
            break
        if WAITING not in done.stdout + done.stderr:
            sys.exit(f"dvc repro failed (exit {done.returncode})")
        truth = truth or truth_file(root, root / "runs" / "people" / "truth.npz")[0]
        project = project_of(str(cfg.annotate.url), f"{cfg.annotate.project}/{trial.name}")
        subprocess.run([str(ls_python), str(annotator), str(cfg.annotate.url), str(project),
                        str(r), str(truth)], check=True)
    people = json.loads((root / "runs/people" / trial.name / "results.json").read_text())
    oracle = root / "runs" / "people-oracle"
    subprocess.run([sys.executable, "-m", "ripu", "train", "--params", PARAMS, "-q", "--out",
                    str(oracle), "--init",
                    f"models/people/{trial.init}.pt", "-S", "annotate.url=null",
                    "-S", "tracking.experiment=people-oracle",
                    *(f"-S{k}={json.dumps(v)}" for k, v in trial.overrides.items())], check=True)
    want = json.loads((oracle / "results.json").read_text())
    print(f"{trial.name}: val mIoU with people's labels {100 * people['miou']:.2f}, with "
          f"the ground-truth oracle {100 * want['miou']:.2f}")


if __name__ == "__main__":
    main()
