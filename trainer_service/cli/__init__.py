"""The trainer's command line: `commands` (train, evaluate, download, report; the entry point of
`python -m trainer_service`) and `service` (the `worker` command)."""
