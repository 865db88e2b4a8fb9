"""gunicorn settings for the trainer API (`gunicorn -c trainer_service/api/gunicorn.conf.py
"trainer_service.api.app:create_app()"`): 0.0.0.0:$TRAINER_PORT (8001), the rest is
shared.web.gunicorn_common (one BLAS thread per worker: the API only queues jobs and edits small
registry files; training happens in the RQ workers)."""

from shared.heap import freeze_loaded_heap
from shared.web.gunicorn_common import settings

globals().update(settings("TRAINER_PORT", 8001, "digitflow-trainer-api"))
graceful_timeout = 10
# Never log the Authorization header: the default access log format does not include it.
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms'


def post_worker_init(worker):
    """In each worker once the app is loaded (see shared.heap)."""
    freeze_loaded_heap()
