"""digitflow inference service: a Flask app (run under gunicorn) serving models from the registry.

Entry point: ``inference_service.app:create_app``. The service reads the registry folder only; it
never imports redis or rq, so it keeps serving when the trainer side is down.
"""
