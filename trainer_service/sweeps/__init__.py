"""Hyperparameter sweeps: the request body and its validation (`models`), and the Optuna study
on Redis with the coordinator step the API, each trial's end and each worker run
(`coordinator`)."""
