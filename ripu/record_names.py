"""The names a trial's records go under: MLflow run tags, MLflow metric names and the
metrics Ray Tune gets. Writers (:mod:`ripu.trial`, :mod:`ripu.starts`,
:mod:`ripu.environment`, the tracking callback, LSE, people-labelling, the sweep, the warm-up
stage) and readers (the report, the sweep's plans) use these names, never the strings.
Imports nothing.
"""

from __future__ import annotations

# ----------------------------------------------------------------------------- run tags
KIND_TAG = "ripu.kind"  # the trial kind ("warmup" for a warm-up's run)
STRATEGY_TAG = "ripu.strategy"  # the kind itself for a kind that does not select
BUDGET_TAG = "ripu.budget"
POINTS_TAG = "ripu.points"
SEED_TAG = "ripu.seed"
PARAMS_HASH_TAG = "ripu.params_hash"  # ripu.trial.trial_config_hash
GIT_REVISION_TAG = "ripu.git_revision"
LOCK_TAG = "ripu.lock_sha256"  # ripu.environment
VERSION_TAG = "ripu.version.{}"  # one tag per key package (ripu.environment)
START_TAG = "ripu.start"  # where the weights start (ripu.starts)
START_SHA256_TAG = "ripu.start_sha256"
TRIAL_TAG = "ripu.trial"  # the trial's (or warm-up's) name in its experiment
EXPERIMENT_TAG = "ripu.experiment"
INIT_TAG = "ripu.init"  # the warm-up a sweep trial starts from, or "imagenet"
SWEEP_TAG = "ripu.sweep"  # "1" on a sweep's parent run
ERROR_TAG = "ripu.error"  # why a sweep trial failed
STOPPED_EARLY_TAG = "ripu.stopped_early"  # "1": a scheduler stopped the trial
# MLflow's own
RUN_NAME_TAG = "mlflow.runName"
PARENT_RUN_TAG = "mlflow.parentRunId"

# ----------------------------------------------------------------------------- metrics
MIOU = "miou"  # an evaluation summary's mIoU; "miou13" (MIOU13): mIoU* of a 16-class set
MIOU13 = "miou13"
TRAIN = "train/"  # train/<loss term>, train/loss, train/lr
TRAIN_LR = TRAIN + "lr"
VAL = "val/"  # val/miou, ... at each evaluation
FINAL = "final/"  # final/miou, final/labelled_fraction, final/seconds, ...
FINAL_MIOU = FINAL + MIOU
FINAL_MIOU13 = FINAL + MIOU13
FINAL_IOU = FINAL + "iou/"  # final/iou/<class>
FINAL_ITERATIONS = FINAL + "iterations"
FINAL_LABELLED_FRACTION = FINAL + "labelled_fraction"
FINAL_SECONDS = FINAL + "seconds"
ACQ = "acq/"  # acq/labelled_fraction, acq/round_fraction, acq/iteration (step = round)
LABELLED_PX = "labelled_px/"  # labelled_px/<class>
TARGET_PX = "target_px/"  # target_px/<class>
LABELLED_BOUNDARY_PX = "labelled_boundary_px"  # ripu.anatomy
LSE = "lse/"  # an LSE round's: lse/kept_images, ..., lse/tau/<class> (step = round)
PEOPLE = "people/"  # a people-labelled round's counts: people/<count> (step = round)
# Ray Tune's (never logged to MLflow)
ITERATION = "iteration"  # the schedulers' time attribute
SKIPPED = "ripu/skipped"  # 1: the trial had finished earlier
