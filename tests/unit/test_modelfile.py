"""Model files: exact round trip, atomic write, sha256, and a clear error for every kind of damage."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile

import numpy as np
import pytest

from shared.config import TrainConfig
from shared.modelfile import HEADER_KEY, ModelFileError, load_model, save_model


@pytest.fixture
def model():
    cfg = TrainConfig(hidden_layers=[16, 8], dropout=0.2, batch_norm=True)
    m = cfg.build_model(mean=np.random.default_rng(0).random(784, dtype=np.float32))
    m.forward(np.random.default_rng(1).random((32, 784), dtype=np.float32), training=True)
    return m


@pytest.fixture
def saved(tmp_path, model):
    path = tmp_path / "weights.npz"
    save_model(path, model, {"accuracy": 0.9, "classes": list(range(10))})
    return path


def _arrays_and_header(path):
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    return arrays, json.loads(str(arrays.pop(HEADER_KEY)))


def _write(path, arrays, header):
    np.savez(path, **{HEADER_KEY: np.array(json.dumps(header))}, **arrays)


def test_round_trip_identical_predictions_and_sha(tmp_path, model):
    path = tmp_path / "sub" / "weights.npz"
    digest = save_model(path, model, {"run": "abc", "accuracy": 0.97})
    assert digest == hashlib.sha256(path.read_bytes()).hexdigest()
    loaded = load_model(path, expected_sha256=digest)
    assert loaded.sha256 == digest and loaded.metadata == {"run": "abc", "accuracy": 0.97}
    x = np.random.default_rng(2).random((40, 784), dtype=np.float32)
    np.testing.assert_array_equal(loaded.model.predict_proba(x), model.predict_proba(x))
    assert loaded.model.spec() == model.spec()
    # No temp files left behind by the atomic write.
    assert [p.name for p in path.parent.iterdir()] == ["weights.npz"]


def test_header_is_plain_json_and_no_pickles(saved):
    with zipfile.ZipFile(saved) as zf:
        assert f"{HEADER_KEY}.npy" in zf.namelist()
    arrays, header = _arrays_and_header(saved)
    assert header["format"] == "digitflow-mlp" and header["format_version"] == 1
    assert all(a.dtype == np.float32 for a in arrays.values())


def test_save_replaces_atomically_and_rejects_bad_metadata(tmp_path, model):
    path = tmp_path / "w.npz"
    first = save_model(path, model)
    model.params[:1] += 1
    assert save_model(path, model) != first
    with pytest.raises(ModelFileError, match="JSON"):
        save_model(path, model, {"bad": object()})
    with pytest.raises(ModelFileError, match="JSON"):
        save_model(path, model, {"nan": float("nan")})
    assert load_model(path).model is not None  # the failed saves left the old file intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.npz"]


def test_sha_mismatch(saved):
    with pytest.raises(ModelFileError, match="sha256 mismatch") as err:
        load_model(saved, expected_sha256="0" * 64)
    assert str(saved) in str(err.value)


def test_missing_file(tmp_path):
    with pytest.raises(ModelFileError, match="cannot read"):
        load_model(tmp_path / "nope.npz")


def test_truncated_file(saved):
    data = saved.read_bytes()
    saved.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match="truncated or corrupt") as err:
        load_model(saved)
    assert str(saved) in str(err.value)


def test_corrupted_bytes(saved):
    data = bytearray(saved.read_bytes())
    data[200:260] = b"\x00" * 60  # inside the first member's payload: CRC fails
    saved.write_bytes(bytes(data))
    with pytest.raises(ModelFileError):
        load_model(saved)


def test_not_an_npz(tmp_path):
    path = tmp_path / "w.npz"
    path.write_text("hello")
    with pytest.raises(ModelFileError, match="not a readable .npz"):
        load_model(path)
    np.save(tmp_path / "bare.npy", np.zeros(3))
    with pytest.raises(ModelFileError, match="not an .npz"):
        load_model(tmp_path / "bare.npy")


def test_missing_header(saved):
    arrays, _ = _arrays_and_header(saved)
    np.savez(saved, **arrays)
    with pytest.raises(ModelFileError, match="missing the '__header__'"):
        load_model(saved)


def test_header_not_json(saved):
    arrays, _ = _arrays_and_header(saved)
    np.savez(saved, **{HEADER_KEY: np.array("{not json")}, **arrays)
    with pytest.raises(ModelFileError, match="not valid JSON"):
        load_model(saved)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"format": "keras"}, "'format' is 'keras'"),
        ({"format_version": 2}, "unsupported format_version 2"),
        ({"metadata": [1]}, "'metadata' must be an object"),
    ],
)
def test_bad_header_fields(saved, change, message):
    arrays, header = _arrays_and_header(saved)
    header.update(change)
    _write(saved, arrays, header)
    with pytest.raises(ModelFileError, match=message):
        load_model(saved)


def test_missing_header_key(saved):
    arrays, header = _arrays_and_header(saved)
    del header["spec"]
    _write(saved, arrays, header)
    with pytest.raises(ModelFileError, match=r"missing \['spec'\]"):
        load_model(saved)


def test_missing_array(saved):
    arrays, header = _arrays_and_header(saved)
    del arrays["1.W"]
    _write(saved, arrays, header)
    with pytest.raises(ModelFileError, match=r"invalid model: .*missing \['1.W'\]"):
        load_model(saved)


def test_wrong_shape(saved):
    arrays, header = _arrays_and_header(saved)
    arrays["1.W"] = arrays["1.W"][:, :5]
    _write(saved, arrays, header)
    with pytest.raises(ModelFileError, match=r"'1.W' has shape \[784, 5\], expected \[784, 16\]"):
        load_model(saved)


def test_wrong_dtype_and_non_finite(saved):
    arrays, header = _arrays_and_header(saved)
    good = dict(arrays)
    arrays["1.W"] = arrays["1.W"].astype(np.float64)
    _write(saved, arrays, header)
    with pytest.raises(ModelFileError, match="dtype float64, expected float32"):
        load_model(saved)
    good["1.W"] = good["1.W"].copy()
    good["1.W"][0, 0] = np.nan
    _write(saved, good, header)
    with pytest.raises(ModelFileError, match="NaN or infinity"):
        load_model(saved)


def test_invalid_spec(saved):
    arrays, header = _arrays_and_header(saved)
    header["spec"]["layers"][1]["type"] = "lstm"
    _write(saved, arrays, header)
    with pytest.raises(ModelFileError, match="unknown type 'lstm'"):
        load_model(saved)


def test_pickled_object_array_is_refused(saved):
    arrays, header = _arrays_and_header(saved)
    buf = io.BytesIO()
    np.savez(
        buf,
        **{HEADER_KEY: np.array(json.dumps(header))},
        **arrays,
        evil=np.array([{"a": 1}], dtype=object),
    )
    saved.write_bytes(buf.getvalue())
    with pytest.raises(ModelFileError, match="pickled object array; refusing"):
        load_model(saved)
