"""Walk-forward folds, hyperparameter search on Ray Tune, per-coin fan-out, the training run."""
