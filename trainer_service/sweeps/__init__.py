"""Hyperparameter sweeps: the request and view (`models`), the Optuna study (`coordinator`)."""
