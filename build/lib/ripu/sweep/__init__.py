"""Ray Tune sweeps: one trial per grid point (or search sample), resumable, tracked in MLflow.

Each trial runs in its own folder ``<out_dir>/<experiment>/<trial>/`` (config.yaml,
masks/round_<r>.npz, checkpoints/last.pt, results.json, mlflow_run_id.txt), starting from the
``init`` checkpoint (the warm-up). MLflow: one experiment per experiment file, one parent run
per trial-folder root and one child run per trial.

- ``state``: where a trial stands (done, to commit, to resume, to start) and the completion
  commit (results.json, then the MLflow run FINISHED with its final metrics).
- ``trial``: the Ray Tune trainable that runs one trial (trial side).
- ``session``: Ray and the tracking server for a sweep, and the Tuner.
- ``parent_run``: the sweep's MLflow parent run.
- ``progress``: a log line per finished trial.
- ``runner``: :func:`run_sweep`, which ties them together.
"""

from ripu.sweep.parent_run import PARENT_ID_FILE
from ripu.sweep.runner import run_sweep

__all__ = ["PARENT_ID_FILE", "run_sweep"]
