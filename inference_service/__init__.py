"""digitflow inference service: a Flask app (run under gunicorn) serving models from the registry.

Run: ``gunicorn -c inference_service/gunicorn.conf.py "inference_service.app:create_app()"``.
The service only reads the registry folder (it can be mounted read-only) and never imports redis
or rq, so it keeps serving when the trainer side is down.

Every route is listed once, with its documentation, in ``routes.py`` (the table ``create_app``
builds the app and ``GET /openapi.json`` from). The predict and infer routes are plain WSGI
(``predict.py``), dispatched by path in front of the Flask app (``front.py``), which serves
everything else; both answer errors from the web kit's one table (``shared.web.errors``), always
as ``{"error": {"code", "message", "field"?}}``. Configuration: ``settings.py`` (the only place
the environment is read) and the README's table.
"""
