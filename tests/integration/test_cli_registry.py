"""The `digitflow` commands that change what the registry serves or keeps (alias, unalias, traffic,
shadow, pin, retention), `digitflow models` and `digitflow cancel-sweep`, against the real trainer API under gunicorn
with API_TOKEN set (the client sends it) and the real Redis: each command's line, the registry
state it leaves, and the way it fails (bad arguments → usage message and exit 2; the API's
refusal → its message and exit 2)."""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.client import main
from shared.redis_embedded import free_port
from shared.registry import Registry
from tests.service_support import Service, publish, trainer_api
from tests.trainer_support import delete_queue_keys

TOKEN = "cli-test-token"


@contextlib.contextmanager
def serving(tmp_path: Path, redis_url: str, queue: str) -> Iterator[tuple[Service, Registry]]:
    """Model `digits` with versions 1 and 2, and the trainer API serving its registry."""
    registry = Registry(tmp_path / "models")
    assert [publish(registry, tmp_path, seed=s) for s in (1, 2)] == [1, 2]
    with trainer_api(registry.root, tmp_path, redis_url, queue, API_TOKEN=TOKEN) as svc:
        yield svc, registry


@pytest.fixture
def api(tmp_path: Path, redis_url: str, queue: str) -> Iterator[tuple[Service, Registry]]:
    """A registry and API of the test's own, for the tests that change what it serves."""
    with serving(tmp_path, redis_url, queue) as both:
        yield both


@pytest.fixture(scope="module")
def refusing_api(tmp_path_factory, redis_url: str) -> Iterator[tuple[Service, Registry]]:
    """One registry and API for the module's refused commands (25 of them: one gunicorn start
    each was most of this module's time). Each such test checks the state unchanged by it."""
    queue = f"t{uuid.uuid4().hex[:10]}"
    try:
        with serving(tmp_path_factory.mktemp("refusals"), redis_url, queue) as both:
            yield both
    finally:
        delete_queue_keys(redis_url, queue)


def cli(svc: Service, capsys: pytest.CaptureFixture, *argv: str, token: str = TOKEN):
    """Run `digitflow --trainer-url … ARGV` (inference unreachable: nothing here needs it);
    returns (exit status, stdout, stderr). argparse's own exits count as statuses too."""
    dead = f"http://127.0.0.1:{free_port()}"
    args = ["--trainer-url", svc.base, "--inference-url", dead, "--token", token, *argv]
    try:
        code = main(args)
    except SystemExit as exc:
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_sets_and_clears_aliases_traffic_and_shadow(api, capsys) -> None:
    svc, registry = api

    code, out, _ = cli(svc, capsys, "models")
    assert code == 0
    assert out == "digits: latest 2, default 2, pinned -, aliases -\n"

    assert cli(svc, capsys, "alias", "digits", "champion", "1")[:2] == (
        0,
        "digits: latest 2, default 2, pinned -, aliases champion=1\n",
    )
    assert cli(svc, capsys, "alias", "digits", "candidate", "2")[0] == 0
    code, out, _ = cli(svc, capsys, "traffic", "digits", "champion=90", "candidate=10")
    assert code == 0 and out.rstrip().endswith("traffic champion=90 candidate=10"), out
    code, out, _ = cli(svc, capsys, "shadow", "digits", "candidate")
    assert code == 0 and out.rstrip().endswith("shadow candidate"), out
    assert cli(svc, capsys, "pin", "digits", "1")[:2] == (
        0,
        "digits: default version is now 1\n",
    )
    state = registry.state("digits")
    assert state["aliases"] == {"champion": 1, "candidate": 2}
    assert state["traffic"] == [
        {"version": "champion", "weight": 90},
        {"version": "candidate", "weight": 10},
    ]
    assert state["shadow"] == "candidate" and state["pinned"] == 1

    code, out, _ = cli(svc, capsys, "models")
    assert code == 0
    assert out == (
        "digits: latest 2, default 1, pinned 1, aliases candidate=2 champion=1, "
        "traffic champion=90 candidate=10, shadow candidate\n"
    )

    # A version by number works as well as an alias.
    code, out, _ = cli(svc, capsys, "traffic", "digits", "1=50", "2=50")
    assert code == 0 and "traffic 1=50 2=50" in out, out
    code, out, _ = cli(svc, capsys, "shadow", "digits", "2")
    assert code == 0 and out.rstrip().endswith("shadow 2"), out

    # Back to one version, no shadow, one alias.
    assert cli(svc, capsys, "traffic", "digits", "--clear")[0] == 0
    assert cli(svc, capsys, "shadow", "digits", "--clear")[0] == 0
    code, out, _ = cli(svc, capsys, "unalias", "digits", "candidate")
    assert code == 0
    assert out == "digits: latest 2, default 1, pinned 1, aliases champion=1\n"
    state = registry.state("digits")
    assert (state["traffic"], state["shadow"], state["aliases"]) == (None, None, {"champion": 1})


def test_cli_sets_and_clears_the_retention_rule(api, capsys) -> None:
    svc, registry = api
    code, out, _ = cli(svc, capsys, "retention", "digits", "3")
    assert (code, out) == (0, "digits: latest 2, default 2, pinned -, aliases -, keep last 3\n")
    assert registry.state("digits")["keep_last"] == 3
    assert cli(svc, capsys, "models")[1].rstrip().endswith("keep last 3")
    code, out, _ = cli(svc, capsys, "retention", "digits", "--clear")
    assert (code, out) == (0, "digits: latest 2, default 2, pinned -, aliases -\n")
    assert registry.state("digits")["keep_last"] is None


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["retention", "digits"], "N or --clear"),
        (["retention", "digits", "2", "--clear"], "N or --clear"),
        (["retention", "digits", "two"], "invalid int value"),
        (["traffic", "digits", "champion=ninety"], "is not VERSION=WEIGHT"),
        (["traffic", "digits", "champion"], "is not VERSION=WEIGHT"),
        (["traffic", "digits", "=100"], "is not VERSION=WEIGHT"),
        (["traffic", "digits"], "VERSION=WEIGHT routes or --clear"),
        (["traffic", "digits", "1=100", "--clear"], "VERSION=WEIGHT routes or --clear"),
        (["shadow", "digits"], "a VERSION or --clear"),
        (["shadow", "digits", "2", "--clear"], "a VERSION or --clear"),
        (["alias", "digits", "champion", "two"], "invalid int value"),
        (["alias", "digits", "champion"], "required"),
        (["unalias", "digits"], "required"),
        (["cancel-sweep"], "required"),
    ],
)
def test_cli_bad_arguments_exit_2_with_a_usage_message(refusing_api, capsys, argv, message) -> None:
    svc, registry = refusing_api
    before = registry.state("digits")
    code, out, err = cli(svc, capsys, *argv)
    assert code == 2 and out == "", out
    assert message in err and "usage: digitflow" in err and "Traceback" not in err, err
    assert registry.state("digits") == before


@pytest.mark.parametrize(
    ("argv", "status", "message"),
    [
        (["traffic", "digits", "1=90", "2=20"], 422, "weights must sum to 100, not 110"),
        (["traffic", "digits", "1=50", "nosuch=50"], 404, "(field routes[1].version)"),
        (["shadow", "digits", "9"], 404, "model 'digits' has no version 9"),
        (["alias", "digits", "champion", "9"], 404, "model 'digits' has no version 9"),
        (["alias", "digits", "Bad!", "1"], 422, "invalid alias"),
        (["unalias", "digits", "nosuch"], 404, "model 'digits' has no alias 'nosuch'"),
        (["shadow", "nosuch", "1"], 404, "model 'nosuch' not found in the registry"),
        (["cancel-sweep", "0" * 32], 404, "no such sweep"),
        (["retention", "digits", "0"], 422, "keep_last"),
        (["retention", "nosuch", "2"], 404, "model 'nosuch' not found in the registry"),
    ],
)
def test_cli_api_refusals_print_the_api_message_and_exit_2(
    refusing_api, capsys, argv, status, message
) -> None:
    svc, registry = refusing_api
    before = registry.state("digits")
    code, out, err = cli(svc, capsys, *argv)
    assert code == 2 and out == "", out
    assert err.startswith("digitflow: error: ") and f"HTTP {status}" in err, err
    assert message in err and "Traceback" not in err, err
    assert registry.state("digits") == before


def test_cli_without_the_token_is_refused(refusing_api, capsys) -> None:
    svc, registry = refusing_api
    before = registry.state("digits")
    code, _, err = cli(svc, capsys, "alias", "digits", "champion", "1", token="wrong")
    assert code == 2 and "HTTP 401" in err, err
    assert registry.state("digits") == before


def test_cli_cancels_a_sweep(api, capsys, tmp_path: Path) -> None:
    """No worker runs: the sweep's trials only queue, and cancel-sweep cancels them."""
    svc, _ = api
    body = {
        "base": {"hidden_layers": [16], "epochs": 1, "train_limit": 1000, "augment": False},
        "space": {"seed": [1, 2]},
        "promote_to": "best",
    }
    path = tmp_path / "sweep.json"
    path.write_text(json.dumps(body))
    code, out, err = cli(svc, capsys, "sweep", str(path))
    assert code == 0, err
    sweep_id = out.split()[1]
    assert out == f"sweep {sweep_id} running (model mnist)\n"

    assert cli(svc, capsys, "cancel-sweep", sweep_id)[:2] == (0, f"sweep {sweep_id}: canceled\n")
    view = svc.get(f"/v1/sweeps/{sweep_id}").json()
    assert view["status"] == "canceled" and view["promotion"] is None
    assert {t["job_status"] for t in view["trials"]} == {"canceled"}, view["trials"]

    code, out, err = cli(svc, capsys, "cancel-sweep", sweep_id)
    assert code == 2 and out == "" and "HTTP 409" in err and "already canceled" in err, err
