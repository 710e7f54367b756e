"""Training and evaluation engine: the training loop, the lr schedule and evaluation."""
