"""Small pieces of the trainer service and client: failure descriptions, which errors are retried,
JSON-safe meta, the CLI's --field=value parsing and its error handling."""

from __future__ import annotations

import json
import traceback
import urllib.error
from pathlib import PurePosixPath

import numpy as np
import pytest
import requests

from shared.client import DigitflowError, _error_message, main, parse_fields
from shared.datasets import DatasetError
from shared.manifest import json_default, json_value
from shared.redis_embedded import free_port
from shared.web.settings import SettingsError
from trainer_service import queueing
from trainer_service.settings import TrainerSettings
from trainer_service.worker import jobs


def formatted(exc: BaseException) -> str:
    try:
        raise exc
    except BaseException as caught:
        return "".join(traceback.format_exception(caught))


# ---- failure descriptions -----------------------------------------------------------------------


def test_describe_failure_recognises_rq_failure_kinds():
    abandoned = "Moved to FailedJobRegistry, due to AbandonedJobError, at 2026-01-01"
    assert "worker running this job died" in queueing.describe_failure(abandoned)
    killed = "Work-horse terminated unexpectedly; waitpid returned 9 (signal 9); "
    assert "killed by signal 9" in queueing.describe_failure(killed)
    timeout = formatted(RuntimeError("x")).replace(
        "RuntimeError: x",
        "rq.timeouts.JobTimeoutException: Task exceeded maximum timeout value (3 seconds)",
    )
    text = queueing.describe_failure(timeout, timeout=3)
    assert "time limit of 3 s" in text and "JOB_TIMEOUT" in text
    assert queueing.describe_failure(None) == "the job failed without an error message"


def test_describe_failure_keeps_the_final_exception_line():
    assert (
        queueing.describe_failure(formatted(DatasetError("bad file"))) == "DatasetError: bad file"
    )
    assert queueing.describe_failure(formatted(ValueError("a\nb"))) == "ValueError: a b"
    try:
        try:
            raise KeyError("first")
        except KeyError:
            raise RuntimeError("second") from None
    except RuntimeError as exc:
        text = "".join(traceback.format_exception(exc))
    assert queueing.describe_failure(text) == "RuntimeError: second"
    assert len(queueing.describe_failure(formatted(ValueError("x" * 2000)))) <= 500


# ---- transient errors ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "transient"),
    [
        (urllib.error.URLError("refused"), True),
        (ConnectionResetError(), True),
        (TimeoutError(), True),
        (requests.ConnectionError("down"), True),
        (DatasetError("could not download x.gz ... from any mirror", transient=True), True),
        (DatasetError("could not download ... from any mirror: u: sha256 mismatch"), False),
        (DatasetError("/data/train-images.gz: corrupt gzip data"), False),
        (ValueError("invalid training config"), False),
        (MemoryError(), False),
    ],
)
def test_only_network_errors_are_transient(exc, transient):
    assert jobs.is_transient(exc) is transient


def test_transient_cause_anywhere_in_the_chain():
    try:
        try:
            raise ConnectionRefusedError("refused")
        except ConnectionRefusedError as inner:
            raise RuntimeError("download failed") from inner
    except RuntimeError as outer:
        assert jobs.is_transient(outer)


def test_retry_schedule_from_env(monkeypatch):
    monkeypatch.delenv("JOB_RETRY_DELAYS", raising=False)
    monkeypatch.delenv("JOB_RETRIES", raising=False)
    assert TrainerSettings.load().retry_delays() == [5, 30, 120]
    monkeypatch.setenv("JOB_RETRY_DELAYS", " 1, 2 ")
    assert TrainerSettings.load().retry_delays() == [1, 2]
    monkeypatch.setenv("JOB_RETRIES", "4")
    assert TrainerSettings.load().retry_delays() == [1, 2, 2, 2]
    monkeypatch.setenv("JOB_RETRIES", "0")
    assert TrainerSettings.load().retry_delays() == []
    monkeypatch.setenv("JOB_RETRY_DELAYS", "1,-2")
    with pytest.raises(SettingsError, match="JOB_RETRY_DELAYS"):
        TrainerSettings.load()


def test_json_value_converts_numpy_and_nan():
    value = {"a": np.float32(0.5), "b": np.arange(3), "c": (1, np.int64(2)), "d": float("nan")}
    assert json_value(value, nan_as_none=True) == {
        "a": 0.5, "b": [0, 1, 2], "c": [1, 2], "d": None
    }  # fmt: skip
    kept = json_value({"d": np.float64("nan"), 3: np.bool_(True), "p": PurePosixPath("/m")})
    assert kept["d"] != kept["d"] and kept["3"] is True and kept["p"] == "/m"


def test_one_conversion_behind_every_json_writer():
    """The registry's files, the CLI's --json line and the job meta use the same conversion."""
    from shared.registry.files import json_bytes

    assert json.loads(json_bytes({"a": np.arange(2), "b": np.float32(0.25)})) == {
        "a": [0, 1], "b": 0.25
    }  # fmt: skip
    assert json.dumps(np.int64(3), default=json_default) == "3"
    with pytest.raises(TypeError, match="object is not JSON serialisable"):
        json.dumps(object(), default=json_default)
    with pytest.raises(ValueError):  # strict: NaN is refused, never written
        json_bytes({"loss": np.float64("nan")})


def test_settings_are_strict_and_name_the_variable(monkeypatch):
    for name, value in (("JOB_TIMEOUT", "soon"), ("JOB_HEARTBEAT_SECONDS", "0"),
                        ("CORS_ORIGINS", "localhost:8000"), ("LOG_LEVEL", "loud")):  # fmt: skip
        monkeypatch.setenv(name, value)
        with pytest.raises(SettingsError, match=name):
            TrainerSettings.load()
        monkeypatch.delenv(name)
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.delenv("MODEL_REGISTRY_DIR", raising=False)
    settings = TrainerSettings.load({"JOB_TIMEOUT": " 7 ", "REDIS_URL": ""})
    assert settings.job_timeout == 7 and settings.redis_url == "redis://localhost:6379/0"
    assert str(settings.model_registry_dir) == "var/models"  # the kit's one default


# ---- client -------------------------------------------------------------------------------------


def test_parse_fields():
    fields = parse_fields(
        ["--epochs=3", "--hidden-layers", "128,64", "--augment", "--learning_rate=1e-3",
         "--model", "digits", "--grad-clip=null", "--hidden_layers=[32]"]
    )  # fmt: skip
    assert fields == {
        "epochs": 3,
        "hidden_layers": [32],
        "augment": True,
        "learning_rate": 0.001,
        "model": "digits",
        "grad_clip": None,
    }
    assert parse_fields(["--hidden-layers=64"]) == {"hidden_layers": [64]}
    with pytest.raises(DigitflowError):
        parse_fields(["epochs=3"])


def test_error_messages_of_both_services():
    trainer = {"error": {"code": "invalid_config", "message": "invalid training config: epochs",
                         "fields": [{"field": "epochs", "message": "too small"}]}}  # fmt: skip
    assert _error_message(trainer) == "invalid training config: epochs (epochs: too small)"
    assert _error_message({"error": {"code": "not_found", "message": "no model"}}) == "no model"
    one_field = {
        "error": {"code": "invalid_field", "message": "no alias 'x'", "field": "routes[1]"}
    }
    assert _error_message(one_field) == "no alias 'x' (field routes[1])"
    named = {"error": {"code": "invalid_field", "message": "bad version: 0", "field": "version"}}
    assert _error_message(named) == "bad version: 0"
    assert _error_message({"error": "plain"}) == "plain"
    assert _error_message("text") is None


def test_cli_errors_exit_2_with_a_message(capsys, tmp_path):
    dead = f"http://127.0.0.1:{free_port()}"
    assert main(["--trainer-url", dead, "status", "abc"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("digitflow: error: cannot reach") and "Traceback" not in err
    assert main(["--inference-url", dead, "predict", str(tmp_path / "missing.png")]) == 2
    assert "cannot read" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["status"])  # argparse usage error
    assert exit_info.value.code == 2


def test_submit_help_names_every_preset() -> None:
    from typing import get_args

    from shared.client import build_parser
    from shared.config import PresetName

    submit = build_parser()._subparsers._group_actions[0].choices["submit"]
    preset = next(a for a in submit._actions if "--preset" in a.option_strings)
    assert preset.help.split(" | ") == list(get_args(PresetName))


def test_the_client_knows_every_job_status() -> None:
    """`digitflow wait` ends on every final status (a pruned trial too) and `jobs --status`
    offers every status the API filters on."""
    from shared.client import JOB_STATUSES, TERMINAL_STATUSES

    assert JOB_STATUSES == queueing.PUBLIC_STATUSES
    assert {*queueing.PUBLIC_STATUSES} - {"queued", "started"} == TERMINAL_STATUSES
