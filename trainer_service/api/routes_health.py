"""`/healthz` and `/readyz`: is the process alive, can it queue jobs."""

from __future__ import annotations

from typing import Literal

from flask import Blueprint
from pydantic import BaseModel, Field
from rq import Worker

from trainer_service.api.web import answer, api, state

bp = Blueprint("health", __name__)


class Alive(BaseModel):
    """The process answers."""

    status: str


class Ready(BaseModel):
    """Redis answers, so jobs can be queued; and whether queuing one needs a token."""

    status: str
    queue: str
    workers: int
    auth: Literal["bearer", "none"] = Field(
        description="'bearer': API_TOKEN is set, so POST, PUT and DELETE need "
        "'Authorization: Bearer <token>' (reads never do); 'none': no token needed"
    )


@api.route(bp, "GET", "/healthz", responses={200: Alive}, summary="Alive", tags=("health",))
def healthz():
    """Alive: the process answers. Says nothing about Redis (see /readyz)."""
    return answer(Alive(status="ok"))


@api.route(
    bp, "GET", "/readyz", responses={200: Ready}, errors=(503,), summary="Ready", tags=("health",)
)
def readyz():
    """Says whether writes need the token, so the web page can ask for it before its first
    write instead of learning it from a 401."""
    st = state()
    st.redis.ping()
    workers = Worker.count(connection=st.redis, queue=st.queue)
    auth = "bearer" if st.settings.token() is not None else "none"
    return answer(Ready(status="ready", queue=st.queue.name, workers=workers, auth=auth))
