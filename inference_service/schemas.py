"""The request bodies (pydantic models that validate them) and the answers (models that document
them), from which ``/openapi.json`` is generated.

Request models check the JSON *structure* — every field's type, unknown fields, allowed values —
and name the field of any mistake. The pixel arrays inside them (``instances``, a tensor's
``data``) are typed ``Any`` here and read by `inference_service.decoders` with orjson and NumPy:
validating 784 numbers per image through pydantic costs ~10× more than the vectorised check, and
the accepted shape depends on the served model's input size. Their documented schema (an MNIST
model's: 784 pixels or 28 rows of 28) is attached with ``WithJsonSchema``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, WithJsonSchema

from shared.config import MODEL_NAME_PATTERN
from shared.nn.explain import DEFAULT_STEPS
from shared.registry import ModelDetail, ModelSummary, ShadowRef, TrafficRoute, VersionSummary

#: What the document shows for pixel arrays (the decoders read the served model's input size).
DOC_SIDE = 28
DOC_PIXELS = DOC_SIDE * DOC_SIDE


def _pixels(maximum: float) -> dict[str, Any]:
    return {"type": "number", "minimum": 0, "maximum": maximum}


def _image(maximum: float) -> dict[str, Any]:
    row = {"type": "array", "minItems": DOC_SIDE, "maxItems": DOC_SIDE}
    return {
        "description": f"One image: the model's input size of pixel values ({DOC_PIXELS} for an "
        f"MNIST model), or {DOC_SIDE} rows of {DOC_SIDE} when that size is a square.",
        "oneOf": [
            {"type": "array", "minItems": DOC_PIXELS, "maxItems": DOC_PIXELS,
             "items": _pixels(maximum)},
            {**row, "items": {**row, "items": _pixels(maximum)}},
        ],
    }  # fmt: skip


def _images(maximum: float) -> dict[str, Any]:
    return {"type": "array", "minItems": 1, "description": "Images (at most MAX_BATCH_IMAGES).",
            "items": _image(maximum)}  # fmt: skip


def _json_number(value: Any) -> Any:
    """Only a JSON number counts: pydantic would also take ``true`` as 1 and ``"3"`` as 3."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"must be an integer, got {type(value).__name__}")
    return value


#: A JSON integer as JSON Schema counts them: 3 and 3.0, never true or "3".
JsonInt = Annotated[int, BeforeValidator(_json_number)]

_CLOSED = ConfigDict(extra="forbid")
_OPEN = ConfigDict(extra="allow")


# ---- /v1 predict ------------------------------------------------------------------------------


class _Predict(BaseModel):
    model_config = _CLOSED


class RawPredictRequest(_Predict):
    """Pixels 0-255 (``"scale": "raw"``, the default)."""

    instances: Annotated[list[Any], WithJsonSchema(_images(255))]
    scale: Literal["raw"] = "raw"


class UnitPredictRequest(_Predict):
    """Pixels 0-1 (``"scale": "unit"``)."""

    instances: Annotated[list[Any], WithJsonSchema(_images(1))]
    scale: Literal["unit"]


class PredictRequest(_Predict):
    """``{"instances": [...], "scale": "raw"|"unit"}``: what `decoders.decode_instances` reads.
    Documented as `PREDICT_JSON_DOC`, the two alternatives above, so the document says which pixel
    range goes with which scale."""

    instances: list[Any]
    scale: Literal["raw", "unit"] = "raw"


PREDICT_JSON_DOC = {
    "oneOf": [RawPredictRequest.model_json_schema(), UnitPredictRequest.model_json_schema()]
}


class PredictResponse(BaseModel):
    """Predictions: the most likely class and every class probability, per image."""

    model: str
    model_version: int
    predictions: list[int]
    probabilities: list[list[float]]


# ---- /v1 explain -------------------------------------------------------------------------------

#: Trapezoid steps an explain request may ask for: fewer is too coarse to trust (the completeness
#: gap grows), more costs seconds for a batch.
MIN_EXPLAIN_STEPS, MAX_EXPLAIN_STEPS = 8, 256
_TARGET = WithJsonSchema({
    "description": 'The class to explain ("why not 1"); default: each image\'s predicted class. '
    "At most the model's number of classes minus one (422 beyond).",
    "anyOf": [{"type": "integer", "minimum": 0}, {"type": "null"}],
})  # fmt: skip
_STEPS = (Field(ge=MIN_EXPLAIN_STEPS, le=MAX_EXPLAIN_STEPS), WithJsonSchema({
    "type": "integer", "minimum": MIN_EXPLAIN_STEPS, "maximum": MAX_EXPLAIN_STEPS,
    "default": DEFAULT_STEPS,
    "description": "Trapezoid-rule intervals of the path integral (steps + 1 gradient passes).",
}))  # fmt: skip


class ExplainOptions(BaseModel):
    """What an explain request adds to a predict request: a JSON body's extra fields, or the query
    parameters of any other media type."""

    model_config = _CLOSED
    # The range is checked against the served model's classes (422), negatives included.
    target: Annotated[JsonInt | None, _TARGET] = None
    steps: Annotated[JsonInt, *_STEPS] = DEFAULT_STEPS


class ExplainQuery(BaseModel):
    """``?target=1&steps=64`` for bodies that are not JSON (a .npy file, pictures)."""

    target: Annotated[int | None, _TARGET] = None
    steps: Annotated[int, *_STEPS] = DEFAULT_STEPS


class RawExplainRequest(RawPredictRequest, ExplainOptions):
    """Pixels 0-255 (``"scale": "raw"``, the default)."""


class UnitExplainRequest(UnitPredictRequest, ExplainOptions):
    """Pixels 0-1 (``"scale": "unit"``)."""


class ExplainRequest(PredictRequest, ExplainOptions):
    """A predict body plus ``target`` and ``steps``; documented as `EXPLAIN_JSON_DOC`."""


EXPLAIN_JSON_DOC = {
    "oneOf": [RawExplainRequest.model_json_schema(), UnitExplainRequest.model_json_schema()]
}


class ExplainResponse(PredictResponse):
    """Predictions plus integrated-gradients attributions of the target class, per image."""

    target: list[int] = Field(description="The class explained, per image.")
    steps: int
    baseline: str = Field(description="What the attributions are relative to.")
    attributions: list[list[float]] = Field(
        description="[N, input size]: each pixel's share of the target logit's difference from "
        "the baseline's (positive: the pixel argues for the class)."
    )
    logit_difference: list[float] = Field(
        description="F_target(image) - F_target(baseline): what each row of attributions adds up "
        "to, up to the integration error."
    )
    completeness_gap: list[float] = Field(
        description="sum(attributions) - logit_difference per image: the integration error."
    )


# ---- /v1 feature maps -------------------------------------------------------------------------


class FeatureMapsResponse(BaseModel):
    """What the first convolution sees: its filters and, per image, its feature maps."""

    model: str
    model_version: int
    layer: int = Field(
        description="The first conv2d's index among the version's layers (its entry in "
        "GET /v1/models/{name} versions[].network)."
    )
    filters: list[list[list[list[float]]]] = Field(
        description="[out channels, in channels, kernel, kernel]: its kernels."
    )
    feature_maps: list[list[list[list[float]]]] = Field(
        description="[N, out channels, height, width]: its output for each image once the batch "
        "norm and activation that follow it are applied, on exactly the pixels a predict "
        "request with the same body predicts on."
    )


# ---- /v2 infer (Open Inference Protocol) ------------------------------------------------------


class TensorParameters(BaseModel):
    model_config = _OPEN
    binary_data_size: (
        Annotated[JsonInt, Field(ge=0), WithJsonSchema({"type": "integer", "minimum": 0})] | None
    ) = Field(
        None,
        description="Byte size of the raw little-endian tensor that follows the JSON header "
        "(binary tensor extension; N x input size x 4 for FP32, x 1 for UINT8).",
    )


_BATCH = {"type": "integer", "minimum": 1, "maximum": 2**31 - 1,
          "description": "N, the number of images"}  # fmt: skip
_SHAPE_DOC = {
    "description": f"[N, input size], [N, side, side] or [N, 1, side, side]: [N, {DOC_PIXELS}], "
    f"[N, {DOC_SIDE}, {DOC_SIDE}] or [N, 1, {DOC_SIDE}, {DOC_SIDE}] for an MNIST model (the "
    "model metadata gives its shapes).",
    "anyOf": [
        {"type": "array", "prefixItems": [_BATCH, *({"const": d} for d in image)], "items": False,
         "minItems": 1 + len(image)}
        for image in ([DOC_PIXELS], [DOC_SIDE, DOC_SIDE], [1, DOC_SIDE, DOC_SIDE])
    ],
}  # fmt: skip
_PIXEL = {"type": "number", "minimum": 0, "maximum": 255}
_DATA_DOC = {
    "description": "Pixels, flat row-major or nested like the shape: FP32 0-1, UINT8 0-255.",
    "type": "array",
    "minItems": 1,
    "items": {"anyOf": [_PIXEL, {"type": "array", "items": {"anyOf": [
        _PIXEL, {"type": "array", "items": {"anyOf": [
            _PIXEL, {"type": "array", "items": _PIXEL}]}}]}}]},
}  # fmt: skip


class InputTensor(BaseModel):
    """The one input tensor: pixels as JSON ``data`` or, with the binary extension, as
    ``parameters.binary_data_size`` raw bytes after the JSON header."""

    model_config = ConfigDict(
        extra="forbid",
        # JSON `data`, or the binary extension's byte count: one of the two must be there.
        json_schema_extra={"anyOf": [
            {"required": ["data"]},
            {"required": ["parameters"], "properties": {"parameters": {
                "type": "object", "required": ["binary_data_size"],
                "properties": {"binary_data_size": {"type": "integer", "minimum": 0}},
            }}},
        ]},
    )  # fmt: skip
    name: Literal["input"]
    shape: Annotated[list[JsonInt], WithJsonSchema(_SHAPE_DOC)]
    datatype: Literal["FP32", "UINT8"]
    data: Annotated[Any, WithJsonSchema(_DATA_DOC)] = None
    parameters: TensorParameters | None = None


class OutputParameters(BaseModel):
    model_config = _OPEN
    binary_data: StrictBool = False


class RequestedOutput(BaseModel):
    model_config = _CLOSED
    name: Literal["probabilities", "predictions"]
    parameters: OutputParameters | None = None


class RequestParameters(BaseModel):
    model_config = _OPEN
    binary_data_output: StrictBool = False


class V2InferRequest(BaseModel):
    """An infer request (JSON, or the JSON header of the binary tensor extension)."""

    model_config = _CLOSED
    id: str | None = None
    parameters: RequestParameters | None = None
    inputs: list[InputTensor] = Field(min_length=1, max_length=1)
    outputs: list[RequestedOutput] | None = Field(None, min_length=1)


class OutputTensor(BaseModel):
    name: Literal["probabilities", "predictions"]
    datatype: Literal["FP32", "INT64"]
    shape: list[int]
    data: list[float] | None = None
    parameters: dict[str, Any] | None = None


class V2InferResponse(BaseModel):
    """Inference result (binary outputs follow the JSON header when asked for)."""

    model_name: str
    model_version: str
    id: str | None = None
    outputs: list[OutputTensor]


class V2TensorMetadata(BaseModel):
    name: str
    datatype: str
    shape: list[int]
    parameters: dict[str, Any] | None = None


class V2ModelMetadata(BaseModel):
    """Model metadata: its good versions and the input it takes."""

    name: str
    versions: list[str]
    platform: str
    inputs: list[V2TensorMetadata]
    outputs: list[V2TensorMetadata]


class V2ServerMetadata(BaseModel):
    """Server metadata."""

    name: str
    version: str
    extensions: list[str]


class V2Live(BaseModel):
    """The server is live."""

    live: bool


class V2Ready(BaseModel):
    """Whether every model's default version is loaded in this worker."""

    ready: bool


class V2ModelReady(BaseModel):
    """The version is loaded (it is loaded on demand)."""

    name: str
    version: str
    ready: bool


# ---- listing, health ----------------------------------------------------------------------------


class Health(BaseModel):
    """The worker answers."""

    status: str
    pid: int


class Readiness(BaseModel):
    """Every model's default version loaded in this worker (503: what is missing; an empty
    registry is not ready)."""

    ready: bool
    reason: str | None = None
    missing: list[str] | None = None
    models: dict[str, Any]
    registry: dict[str, Any] | None = Field(
        None,
        description="The store as of this worker's last poll: location, reachable, and when "
        "it is not: error, unreachable_since (Unix time) and what is still served.",
    )
    pid: int | None = None
    loaded: list[str] | None = None


# The registry's model view (`shared.registry.views`), plus what this worker serves: the one
# extension inference adds to the shape both services answer.


class ServedRoute(TrafficRoute):
    """A traffic route as set, and what this worker serves for it."""

    serving: int | None = Field(
        None,
        description="The version number this route serves (null: it gets no traffic, or this "
        "worker has not scanned the split yet).",
    )
    problem: str | None = Field(None, description="Why it gets no traffic.")


class ServedShadow(ShadowRef):
    """The shadow as set, and what this worker runs for it."""

    serving: int | None = Field(
        None, description="The version number this worker runs as shadow (null: none yet)."
    )
    problem: str | None = Field(None, description="Why it is not shadowing.")


class ServedModelSummary(ModelSummary):
    """The registry's summary of a model, plus the version this worker serves by default."""

    serving_version: int | None = Field(
        description="Version this worker serves by default right now."
    )


class ServedModelList(BaseModel):
    """Every model, as the registry lists it, plus what this worker serves."""

    models: list[ServedModelSummary]


class LayerView(BaseModel):
    """One layer of a version's network, as the engine describes it (`Sequential.describe`)."""

    kind: str = Field(description="conv2d, maxpool2d, dense, relu, dropout, flatten, ...")
    output_shape: list[int] = Field(
        description="Per image: [features], or [channels, height, width]."
    )
    params: int = Field(description="Trainable values.")
    settings: dict[str, Any] = Field(
        description="The layer's settings in the model file's spec (kernel_size, stride, "
        "padding, out_features, p, ...)."
    )


class ServedVersion(VersionSummary):
    """A version as the registry lists it (``broken`` also when this worker could not load it),
    plus whether this worker has it loaded and its network."""

    loaded: bool = Field(description="Loaded in this worker.")
    network: list[LayerView] | None = Field(
        description="Its layers in order with their output shapes and parameter counts, as the "
        "engine builds them from the version's training config (null: no config a trainer "
        "wrote)."
    )


class ServedModelDetail(ModelDetail):
    """The registry's detail of a model (history: the newest 50 changes), plus how this worker
    serves it: the default it serves, each traffic route's and the shadow's version or why
    none, the live figures and which versions are loaded."""

    serving_version: int | None = Field(
        description="Version this worker serves by default right now."
    )
    traffic: list[ServedRoute] | None = Field(
        description="The default route's traffic split as set and as this worker serves it: "
        "each route's version and weight as set, the version number it serves ('serving', null "
        "when it gets no traffic) and why not ('problem'). Null when the model has no split."
    )
    shadow: ServedShadow | None = Field(
        description="The shadow version as set, the number this worker runs ('serving') or why "
        "not ('problem'). Null when the model has no shadow."
    )
    live: dict[str, Any] = Field(
        description="Live figures summed over every worker: 'versions' (per version: requests, "
        "images, predicted_classes, mean_confidence), 'shadows' (per shadow version compared: "
        "requests, images, agreement, confusion [served class][shadow class], mean_confidence "
        "of each side, top_disagreement) and 'shadow_dropped'.",
    )
    versions: list[ServedVersion]


class ReportFileEntry(BaseModel):
    sha256: str
    size_bytes: int


class Manifest(BaseModel):
    """The registry manifest plus status, aliases, default and loaded."""

    model_config = _OPEN
    version: int
    sha256: str
    created_at: str
    size_bytes: int | None = None
    package_version: str | None = None
    config: dict[str, Any] | None = None
    metrics: dict[str, Any] | None = None
    files: dict[str, ReportFileEntry] | None = Field(
        None, description="file name → {sha256, size_bytes}: the training report."
    )
    status: Literal["ok"]
    aliases: list[str] = []
    default: bool
    loaded: bool


# ---- path parameters ----------------------------------------------------------------------------

PATH_PARAMS: dict[str, dict[str, Any]] = {
    "name": {"type": "string", "pattern": MODEL_NAME_PATTERN.replace("\\Z", ""),
             "examples": ["digits"]},
    "ref": {"type": "string", "pattern": "^([1-9][0-9]{0,8}|[a-z0-9][a-z0-9_-]{0,63})$",
            "examples": ["1", "latest", "champion"]},
    "file_name": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"},
}  # fmt: skip
