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
