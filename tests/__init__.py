"""The test suite. Layers: unit (no server), integration (real Redis, RQ, gunicorn), reliability
(faults, load, fuzzing, security), e2e (the whole stack, a browser)."""

from pathlib import Path

#: The checkout the tests run from (commands, Dockerfiles, README are read from here).
REPO_ROOT = Path(__file__).resolve().parent.parent
