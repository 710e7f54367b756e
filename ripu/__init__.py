"""ripu: active domain adaptation for semantic segmentation (RIPU region and point
acquisition, LSE self-training), reproducibly: DVC stages, Ray Tune sweeps, MLflow runs, and
people labelling selected regions in Label Studio. See README.md and docs/."""
