"""digitflow inference service: a Flask app (run under gunicorn) serving models from the registry.

Run: ``gunicorn -c inference_service/gunicorn.conf.py "inference_service.app:create_app()"``.
The service only reads the registry folder (it can be mounted read-only) and never imports redis
or rq, so it keeps serving when the trainer side is down.
Where things are: ``routes.py`` (the one route table) and README.md.
"""
