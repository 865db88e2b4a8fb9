"""gunicorn settings for the trainer API.

    gunicorn -c trainer_service/gunicorn.conf.py "trainer_service.api:create_app()"

Binds 0.0.0.0:$TRAINER_PORT (8001). The API only queues jobs and edits small registry files, so
each worker gets one BLAS thread; training happens in the RQ workers.
"""

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

bind = os.environ.get("GUNICORN_BIND") or f"0.0.0.0:{os.environ.get('TRAINER_PORT', '8001')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("GUNICORN_THREADS", "1"))
worker_class = "gthread" if threads > 1 else "sync"
proc_name = "digitflow-trainer-api"
# gunicorn >= 25 opens a control socket at $XDG_RUNTIME_DIR/gunicorn.ctl (else ~/.gunicorn/); two
# masters on one machine (trainer + inference, parallel tests) would unlink each other's. Unused.
control_socket_disable = True
timeout = 30
graceful_timeout = 10
keepalive = 5
# gunicorn's largest request line (its default is 4094): longer URLs are answered by the app,
# with a JSON error like every other bad request, instead of by gunicorn with an HTML 414.
limit_request_line = 8190
accesslog = "-"
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()
# Never log the Authorization header: the default access log format does not include it.
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms'
