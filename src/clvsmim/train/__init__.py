"""Training: the trainer, its checkpoints, the model zoo and its shipped weights."""
