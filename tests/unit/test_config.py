import pytest
from pydantic import ValidationError

from shared.config import PRESETS, TrainConfig


def test_preset_fills_defaults_and_explicit_fields_win():
    cfg = TrainConfig(preset="seed-basic", epochs=3)
    assert cfg.hidden_layers == PRESETS["seed-basic"]["hidden_layers"]
    assert cfg.batch_size == 0 and cfg.optimizer == "sgd"
    assert cfg.epochs == 3


def test_every_bad_field_is_named():
    with pytest.raises(ValidationError) as err:
        TrainConfig(hidden_layers=[0], learning_rate=-1, optimizer="adagrad", bogus=1)
    bad = {e["loc"][0] for e in err.value.errors()}
    assert bad == {"hidden_layers", "learning_rate", "optimizer", "bogus"}


def test_model_name_defaults_to_dataset_and_is_validated():
    assert TrainConfig(dataset="fashion-mnist").model_name == "fashion-mnist"
    with pytest.raises(ValidationError):
        TrainConfig(model="../etc")


def test_all_presets_validate():
    for name in PRESETS:
        assert TrainConfig(preset=name).preset == name


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"early_stopping_patience": 2, "val_fraction": 0}, "early_stopping_patience", "val_frac"),
        ({"preset": "seed-basic", "early_stopping_patience": 2}, "early_stopping_patience", "vali"),
        ({"batch_norm": True, "batch_size": 1}, "batch_size", "batch norm"),
    ],
)
def test_cross_field_rules_name_the_field(fields, field, message):
    with pytest.raises(ValidationError) as err:
        TrainConfig.model_validate(fields)
    [error] = err.value.errors()
    assert error["loc"] == (field,) and message in error["msg"]


def test_cross_field_rules_hold_on_assignment_too():
    cfg = TrainConfig(early_stopping_patience=2, val_fraction=0.1)
    with pytest.raises(ValidationError) as err:
        cfg.val_fraction = 0
    assert err.value.errors()[0]["loc"] == ("early_stopping_patience",)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("preset", ["best"]),
        ("preset", {"name": "best"}),
        ("preset", 3),
        ("hidden_layers", {"a": 1}),
        ("hidden_layers", [[64]]),
        ("hidden_layers", "64"),
        ("grad_clip", []),
        ("grad_clip", {}),
        ("dataset", ["mnist"]),
        ("model", {"x": 1}),
        ("epochs", [3]),
        ("epochs", "many"),
        ("learning_rate", {"v": 1}),
        ("augment", [True]),
        ("early_stopping_patience", [2]),
        ("val_fraction", None),
        ("seed", 1.5),
        ("optimizer", None),
    ],
)
def test_every_wrong_json_type_is_a_validation_error_naming_the_field(field, value):
    with pytest.raises(ValidationError) as err:
        TrainConfig.model_validate({field: value})
    assert {e["loc"][0] for e in err.value.errors()} == {field}


@pytest.mark.parametrize("body", [[], "best", 3, None])
def test_a_body_that_is_not_an_object_is_a_validation_error(body):
    with pytest.raises(ValidationError):
        TrainConfig.model_validate(body)


def test_training_spec_carries_every_training_field():
    cfg = TrainConfig(preset="best", seed=7, grad_clip=2.5)
    spec = cfg.training_spec()
    for name in spec.__dataclass_fields__:
        assert getattr(spec, name) == getattr(cfg, name), name
