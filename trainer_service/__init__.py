"""digitflow's trainer service, one folder per process that runs it:

- `cli/`: `python -m trainer_service train|evaluate|download|report` trains and evaluates
  locally (`commands`); `python -m trainer_service worker` starts the RQ worker (`service`).
- `api/`: the trainer HTTP API under gunicorn (`app.create_app`, `gunicorn.conf.py`): jobs,
  sweeps and the registry's state (pins, aliases, traffic, shadow).
- `worker/`: the RQ training worker process (`process`), the job it runs (`jobs.train_job`) and
  what it loads once before forking each job (`preload`).
- `sweeps/`: hyperparameter sweeps: the request and its validation (`models`) and the Optuna
  coordinator step the API and the workers run (`coordinator`).

`settings` (every variable any of them reads) and `queueing` (what the API and the workers agree
on: the queue, job records and statuses) are theirs in common. Every path trains through
`shared.pipeline.run_training`, so all produce the same kind of model file and metrics.
"""
