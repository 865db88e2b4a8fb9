"""The trainer HTTP API (gunicorn runs `trainer_service.api.app:create_app()` with
`trainer_service/api/gunicorn.conf.py`): one blueprint per resource, `routes_jobs`,
`routes_sweeps`, `routes_models`, `routes_health`, over `web` (per-app state, route table),
`auth`, `cors` and `idempotency`."""
