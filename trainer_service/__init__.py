"""digitflow's trainer service: the training CLI, the RQ training worker and the trainer HTTP API.

`python -m trainer_service train|evaluate|download` (see `__main__`) trains locally; `worker` and
`api` (see `cli_service`) run the queued service. All of them train through
`shared.pipeline.run_training`, so every path produces the same kind of model file and metrics.
"""
