"""Training (needs torch): checkpoints, the training loop, evaluation of torch models."""
