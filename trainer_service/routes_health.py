"""`/healthz` and `/readyz`: is the process alive, can it queue jobs."""

from __future__ import annotations

from flask import Blueprint, jsonify
from pydantic import BaseModel
from rq import Worker

from trainer_service.web import api, state

bp = Blueprint("health", __name__)


class Alive(BaseModel):
    """The process answers."""

    status: str


class Ready(BaseModel):
    """Redis answers, so jobs can be queued."""

    status: str
    queue: str
    workers: int


@api.route(bp, "GET", "/healthz", responses={200: Alive}, summary="Alive", tags=("health",))
def healthz():
    """Alive: the process answers. Says nothing about Redis (see /readyz)."""
    return jsonify({"status": "ok"})


@api.route(
    bp, "GET", "/readyz", responses={200: Ready}, errors=(503,), summary="Ready", tags=("health",)
)
def readyz():
    """Ready: Redis answers a PING (503 otherwise), and how many workers listen on the queue."""
    st = state()
    st.redis.ping()
    workers = Worker.count(connection=st.redis, queue=st.queue)
    return jsonify({"status": "ready", "queue": st.queue.name, "workers": workers})
