"""DVC stages: one thin module per stage (`python -m pipelines.<stage>`), reading params.yaml."""
