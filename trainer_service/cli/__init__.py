"""The trainer's command line: `commands` (train, evaluate, download and worker; the entry point
of `python -m trainer_service`)."""
