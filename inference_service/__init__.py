"""digitflow inference service: a Flask app (run under gunicorn) serving models from the registry.

Run: ``gunicorn -c inference_service/gunicorn.conf.py "inference_service.app:create_app()"``.
The service only reads the registry folder (it can be mounted read-only) and never imports redis
or rq, so it keeps serving when the trainer side is down.

Routes (all described in ``GET /openapi.json``):

* ``GET /healthz`` (alive), ``GET /readyz`` (200 once every model's default version is loaded in
  this worker; 503 with what is missing — also for an empty registry), ``GET /metrics``.
* ``GET /v1/models``, ``GET /v1/models/<name>``, ``GET /v1/models/<name>/versions/<ref>``.
* ``POST /v1/models/<name>/predict`` (default = pinned, else latest good version) and
  ``POST /v1/models/<name>/versions/<ref>/predict`` (``ref`` = number, ``latest``, ``default`` or
  an alias). Body: ``{"instances": [...], "scale": "raw"|"unit"}``, a PNG/JPEG body, or a
  multipart ``image`` field (repeatable). Answer: ``model``, ``model_version``, ``predictions``,
  ``probabilities`` and the ``X-Model-Version`` header.
* Open Inference Protocol (KServe V2): ``GET /v2``, ``/v2/health/live``, ``/v2/health/ready``,
  ``/v2/models/<name>[/versions/<ref>]``, ``.../ready``, ``POST .../infer`` (JSON or binary
  tensors; FP32 pixels 0-1 or UINT8 0-255; shape [N, input size] or [N, side, side] — [N,784] or
  [N,28,28] for an MNIST model; the model metadata says which).

Every route is listed once, with its documentation, in ``routes.py`` (the table ``create_app``
builds the app from). The predict and infer routes are plain WSGI (``predict.py``), dispatched by
path in front of the Flask app (``front.py``), which serves everything else; both answer errors from the web kit's one
table (``shared.web.errors``).

Configuration (environment, or the same keys in ``create_app(config)``; read in ``settings.py``
only): MODEL_REGISTRY_DIR or MODEL_REGISTRY_URL (s3://bucket/prefix, with the AWS variables),
REGISTRY_CACHE_DIR, REGISTRY_POLL_SECONDS (0.5; 0 = check on every request, no thread),
MODEL_CACHE_SIZE (4), MAX_BATCH_IMAGES (1024), MAX_CONTENT_LENGTH (16 MiB), LOG_LEVEL (INFO),
TRAINER_PUBLIC_URL / TRAINER_PORT (the web page's trainer address); for gunicorn also
INFERENCE_PORT (8000), WEB_CONCURRENCY (2), GUNICORN_THREADS (1 = sync worker, more = gthread) and
PROMETHEUS_MULTIPROC_DIR (created if unset; give each service its own).

Errors are always ``{"error": {"code", "message", "field"?}}``: 400 bad JSON/shape/values or a
wrong JSON type anywhere (the field is named), 404
unknown model/version/alias, 405, 409 broken version, 413 body too large or more than
MAX_BATCH_IMAGES images, 415 content type, 422 empty batch / shape-data mismatch / blank picture.
"""
