"""`POST /v1/sweeps` validation (no Redis: the app points where nothing listens, so a 422 here
was answered at the edge), and the registry operations sweeps use: delete a version, record a
promotion verdict."""

from __future__ import annotations

from dataclasses import replace

import pytest
from pydantic import ValidationError

from shared.config import RULE_HOLES, TrainConfig
from shared.modelfile import save_model
from shared.registry import VersionInUseError
from trainer_service.settings import TrainerSettings
from trainer_service.sweeps.coordinator import storage
from trainer_service.sweeps.models import README_EXAMPLE, SweepRequest

BASE = {"hidden_layers": [16], "epochs": 2, "train_limit": 500}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"space": {"not_a_field": [1, 2]}}, "space.not_a_field"),
        ({"space": {"model": ["a", "b"]}}, "space.model"),
        ({"space": {"learning_rate": {"log_uniform": [0.0, 0.1]}}, "trials": 2},
         "space.learning_rate"),
        ({"space": {"dropout": {"uniform": [0.3, 0.1]}}, "trials": 2}, "space.dropout"),
        ({"space": {"dropout": {"uniform": [0.0, 1.5]}}, "trials": 2}, "space.dropout"),
        ({"space": {"epochs": {"uniform": [1, 3]}}, "trials": 2}, "space.epochs"),
        ({"space": {"learning_rate": {"int": [1, 3]}}, "trials": 2}, "space.learning_rate"),
        ({"space": {"hidden_layers": {"choice": [[16], [0]]}}, "trials": 2},
         "space.hidden_layers"),
        ({"space": {"batch_size": [64, "big"]}}, "space.batch_size"),
        ({"space": {"dropout": {"uniform": [0.0, 0.2]}}}, "trials"),
        ({"space": {"dropout": {"uniform": [0.0, 0.2]}}, "trials": 2, "sampler": "grid"},
         "sampler"),
        ({"space": {"val_fraction": [0.0, 0.1]}}, "space.val_fraction"),
        ({"space": {"batch_norm": [True], "batch_size": [1, 2]}}, "space"),
        ({"space": {"batch_norm": [True, False], "batch_size": [1, 256]}, "trials": 4}, "space"),
        ({"space": {"batch_norm": {"choice": [False, True]}, "batch_size": {"int": [1, 512]}},
          "trials": 4}, "space"),
        ({"space": {"val_fraction": {"uniform": [0.0, 0.2]}}, "trials": 2,
          "base": {**BASE, "early_stopping_patience": 2}}, "space"),
        # batch_size 1 is a hole inside the range (batch norm): its ends 0 and 512 are valid
        ({"space": {"batch_size": {"int": [0, 512]}}, "trials": 2,
          "base": {**BASE, "batch_norm": True}}, "space.batch_size"),
        ({"space": {"batch_norm": {"choice": [False, True]}, "batch_size": {"int": [0, 512]}},
          "trials": 4}, "space"),
        ({"space": {"dropout": {"beta": [0, 1]}}, "trials": 2}, "space.dropout"),
        ({"space": {}}, "space"),
        ({"space": {"dropout": [0.1]}, "objective": "test_accuracy"}, "objective"),
        ({"space": {"dropout": [0.1]}, "promote_to": "latest"}, "promote_to"),
        ({"space": {"dropout": [0.1]}, "parallelism": 0}, "parallelism"),
    ],
)  # fmt: skip
def test_invalid_sweeps_are_422_naming_the_field(trainer_client, body, field):
    r = trainer_client.post("/v1/sweeps", json={"base": BASE, **body})
    assert r.status_code == 422, r.json
    assert r.json["error"]["field"].startswith(field), r.json


@pytest.mark.parametrize(
    ("key", "rule"),
    [("batch_size", {"batch_norm": True}), ("val_fraction", {"early_stopping_patience": 2})],
)
def test_rule_holes_are_what_the_rules_refuse(key, rule):
    """The sweep check trusts RULE_HOLES: each hole is refused with its rule on, valid with it off."""
    for hole in RULE_HOLES[key]:
        with pytest.raises(ValidationError, match=key):
            TrainConfig.model_validate({**BASE, **rule, key: hole})
        TrainConfig.model_validate({**BASE, key: hole})


def test_a_range_around_no_hole_is_valid():
    space = {"batch_size": {"int": [2, 512]}}
    SweepRequest.model_validate({"base": {**BASE, "batch_norm": True}, "space": space, "trials": 2})


def test_base_without_validation_split_is_422(trainer_client):
    r = trainer_client.post(
        "/v1/sweeps", json={"base": {**BASE, "val_fraction": 0}, "space": {"dropout": [0.1]}}
    )
    assert r.status_code == 422
    assert r.json["error"]["field"] == "base.val_fraction"


def test_readme_example_is_valid_and_searched_by_tpe():
    request = SweepRequest.model_validate(README_EXAMPLE)
    assert (request.n_trials, request.sampler_name, request.is_grid) == (8, "tpe", False)


def test_lists_without_trials_are_a_grid():
    request = SweepRequest.model_validate(
        {"base": BASE, "space": {"batch_size": [64, 128], "dropout": [0.0, 0.1, 0.2]}}
    )
    assert (request.n_trials, request.sampler_name) == (6, "grid")
    random = SweepRequest.model_validate(
        {"base": BASE, "space": {"batch_size": [64, 128]}, "trials": 5}
    )
    assert (random.n_trials, random.sampler_name) == (5, "tpe")


def _publish(registry, tmp_path, n: int) -> list[int]:
    from shared.nn.model import build_mlp

    weights = tmp_path / "w.npz"
    save_model(weights, build_mlp(input_size=784, hidden_layers=[4], n_classes=10))
    manifest = {"model": "m", "dataset": "mnist", "config": {}, "metrics": {}}
    return [registry.publish("m", weights, manifest) for _ in range(n)]


def test_delete_version_never_removes_a_pinned_or_aliased_one(registry, tmp_path):
    v1, v2, v3 = _publish(registry, tmp_path, 3)
    registry.pin("m", v1)
    registry.set_alias("m", "candidate", v2)
    for held in (v1, v2):
        with pytest.raises(VersionInUseError):
            registry.delete_version("m", held)
    registry.delete_version("m", v3, actor="test")
    assert registry.versions("m") == [v1, v2]
    assert registry.state("m")["history"][-1]["action"] == "version_delete"


def test_promotion_verdict_is_recorded_either_way(registry, tmp_path):
    v1, v2 = _publish(registry, tmp_path, 2)
    registry.record_promotion("m", "candidate", v1, "the alias was not set", "s1")
    registry.record_promotion("m", "candidate", None, "does not beat", "s2")
    state = registry.state("m")
    assert state["aliases"] == {"candidate": v1}
    kept, moved = state["history"][-1], state["history"][-2]
    assert (moved["action"], moved["to"], moved["sweep"]) == ("alias_set", v1, "s1")
    assert (kept["action"], kept["to"], kept["reason"], kept["sweep"]) == (
        "alias_kept",
        v1,
        "does not beat",
        "s2",
    )
    assert v2 not in state["aliases"].values()


def test_the_readme_shows_the_documented_example_body():
    import json
    import re

    from tests import REPO_ROOT

    readme = (REPO_ROOT / "README.md").read_text()
    section = readme[readme.index("#### Sweeps") :]
    block = re.search(r"```json\n(.*?)```", section, re.S).group(1)
    assert json.loads(block) == README_EXAMPLE


def test_a_sweep_record_stores_its_plan_and_is_read_without_validating(monkeypatch):
    """The record keeps what validation decided; reading it back validates nothing (the listing
    of 500 sweeps of 1,000-point grids took ~20 s when every read validated)."""
    from trainer_service.sweeps import coordinator as sweeps
    from trainer_service.sweeps.models import SweepPlan

    body = {
        "base": BASE,
        "space": {
            "learning_rate": {"log_uniform": [0.001, 0.1]},
            "hidden_layers": {"choice": [[16], [32, 16]]},
            "batch_size": [32, 64],
            "epochs": {"int": [1, 3]},
        },
        "trials": 4,
        "seed": 3,
        "promote_to": "candidate",
        "keep": 2,
    }
    record = sweeps.new_record(SweepRequest.model_validate(body), "a" * 32)

    def refuse(*args, **kwargs):
        raise AssertionError("a stored sweep was validated again")

    monkeypatch.setattr(SweepRequest, "model_validate", refuse)
    plan = SweepPlan.of_record(record)
    assert (plan.n_trials, plan.parallelism, plan.sampler, plan.seed) == (4, 1, "tpe", 3)
    assert (plan.promote_to, plan.keep, plan.objective, plan.pruner) == (
        "candidate", 2, "val_accuracy", "none"
    )  # fmt: skip
    assert plan.base == BASE
    dists = sweeps.distributions(plan)
    assert dists["learning_rate"].log and dists["epochs"].high == 3
    assert sweeps.decode_params(
        plan, {"hidden_layers": "[32, 16]", "batch_size": "64", "learning_rate": 0.01}
    ) == {"hidden_layers": [32, 16], "batch_size": 64, "learning_rate": 0.01}


def test_a_record_stored_before_plans_is_validated_once_for_its_plan():
    from trainer_service.sweeps import coordinator as sweeps
    from trainer_service.sweeps.models import SweepPlan

    request = SweepRequest.model_validate(
        {"base": BASE, "space": {"batch_size": [64, 128], "dropout": [0.0, 0.1, 0.2]}}
    )
    record = sweeps.new_record(request, "b" * 32)
    old = {k: v for k, v in record.items() if k != "plan"}
    plan, old_plan = SweepPlan.of_record(record), SweepPlan.of_record(old)
    assert plan == SweepPlan.of(request)
    # The stored request lists every base field (it was dumped whole): the same config.
    assert TrainConfig.model_validate(old_plan.base) == TrainConfig.model_validate(plan.base)
    assert replace(old_plan, base=plan.base) == plan
    assert old_plan.n_trials == 6


def test_optunas_redis_client_has_the_settings_timeouts(redis_url, queue):
    """Optuna builds its own client from a URL: the timeouts go into its query."""
    settings = TrainerSettings.load(
        {"REDIS_URL": f"{redis_url}?health_check_interval=7", "RQ_QUEUE": queue,
         "REDIS_SOCKET_TIMEOUT": "2.5"}
    )  # fmt: skip
    client = storage(settings, "s1")._backend.read_logs.__self__._redis
    kwargs = client.connection_pool.connection_kwargs
    assert (kwargs["socket_timeout"], kwargs["socket_connect_timeout"]) == (2.5, 2.5)
    assert kwargs["health_check_interval"] == 7  # the URL's own options stay
