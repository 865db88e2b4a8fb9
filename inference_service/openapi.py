"""The OpenAPI 3 description of every route, served at ``/openapi.json``.

Built in Python rather than kept as a hand-edited JSON file so the limits it states (batch size,
name pattern) are the ones the running app enforces. ``python -m inference_service.openapi``
prints it. A unit test checks that every Flask route is described here and vice versa.
"""

from __future__ import annotations

import sys
from typing import Any

import orjson

import shared
from shared.config import MODEL_NAME_PATTERN

N_PIXELS = 784
SIDE = 28


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref("Error")}}}


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


NAME_PARAM = {
    "name": "name",
    "in": "path",
    "required": True,
    "description": "Model name (a registry folder).",
    "schema": {"type": "string", "pattern": MODEL_NAME_PATTERN.replace("\\Z", "")},
}
REF_PARAM = {
    "name": "ref",
    "in": "path",
    "required": True,
    "description": 'A version number (1, 2, ...), "latest", "default", or an alias.',
    "schema": {"type": "string", "pattern": "^([1-9][0-9]{0,8}|[a-z0-9][a-z0-9_-]{0,63})$"},
}

_E400 = _error("Malformed JSON, wrong field type or shape, non-finite or out-of-range value.")
_E404 = _error("Unknown (or malformed) model name, version or alias.")
_E409 = _error("The named version exists but is broken (fails verification); never served.")
_E413 = _error("Body larger than MAX_CONTENT_LENGTH, or more images than MAX_BATCH_IMAGES.")
_E415 = _error("Content-Type not accepted by this route.")
_E422 = _error("Well-formed but unusable: empty batch, shape/data mismatch, blank picture.")
_E503 = _error("The registry could not be read.")


def _nullable(kind: str) -> dict[str, Any]:
    return {"type": [kind, "null"]}


def _pixels(maximum: float) -> dict[str, Any]:
    return {"type": "number", "minimum": 0, "maximum": maximum}


def build_spec(max_batch_images: int = 1024) -> dict[str, Any]:
    """The OpenAPI document (a plain dict)."""

    def image(maximum: float) -> dict[str, Any]:
        return {
            "description": f"One image: {N_PIXELS} pixel values, or {SIDE} rows of {SIDE}.",
            "oneOf": [
                {
                    "type": "array",
                    "minItems": N_PIXELS,
                    "maxItems": N_PIXELS,
                    "items": _pixels(maximum),
                },
                {
                    "type": "array",
                    "minItems": SIDE,
                    "maxItems": SIDE,
                    "items": {
                        "type": "array",
                        "minItems": SIDE,
                        "maxItems": SIDE,
                        "items": _pixels(maximum),
                    },
                },
            ],
        }

    def predict_request(images: str, scale: dict[str, Any], required: list[str]) -> dict:
        return {
            "type": "object",
            "required": required,
            "additionalProperties": False,
            "properties": {
                "instances": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": max_batch_images,
                    "items": _ref(images),
                },
                "scale": scale,
            },
        }

    def nested(leaf: dict[str, Any]) -> dict[str, Any]:
        """Flat row-major values, or nested like the shape (2 or 3 levels)."""
        return {
            "anyOf": [
                {"type": "array", "minItems": 1, "items": leaf},
                {"type": "array", "minItems": 1, "items": {"type": "array", "items": leaf}},
                {
                    "type": "array",
                    "minItems": 1,
                    "items": {"type": "array", "items": {"type": "array", "items": leaf}},
                },
            ]
        }

    batch = {"type": "integer", "minimum": 1, "maximum": max_batch_images}
    shape = {
        "description": f"[N, {N_PIXELS}] or [N, {SIDE}, {SIDE}]",
        "anyOf": [
            {
                "type": "array",
                "prefixItems": [batch, {"const": N_PIXELS}],
                "items": False,
                "minItems": 2,
            },
            {
                "type": "array",
                "prefixItems": [batch, {"const": SIDE}, {"const": SIDE}],
                "items": False,
                "minItems": 3,
            },
        ],
    }

    def v2_tensor(datatype: str, leaf: dict[str, Any] | None) -> dict[str, Any]:
        """A JSON tensor (leaf given: with "data") or a binary one (leaf None)."""
        if leaf is None:
            params: dict[str, Any] = {
                "type": "object",
                "required": ["binary_data_size"],
                "properties": {
                    "binary_data_size": {
                        "type": "integer",
                        "minimum": 0,
                        "description": "Byte size of the raw little-endian tensor that follows "
                        "the JSON header (N x 784 x 4 for FP32, N x 784 for UINT8).",
                    }
                },
            }
            required = ["name", "shape", "datatype", "parameters"]
        else:
            params = {"type": "object", "not": {"required": ["binary_data_size"]}}
            required = ["name", "shape", "datatype", "data"]
        props: dict[str, Any] = {
            "name": {"const": "input"},
            "shape": shape,
            "datatype": {"const": datatype},
            "parameters": params,
        }
        if leaf is not None:
            props["data"] = nested(leaf)
        return {
            "type": "object",
            "required": required,
            "additionalProperties": False,
            "properties": props,
        }

    def v2_request(tensors: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "type": "object",
            "required": ["inputs"],
            "additionalProperties": False,
            "properties": {
                "id": {"type": "string"},
                "parameters": {
                    "type": "object",
                    "properties": {"binary_data_output": {"type": "boolean"}},
                },
                "inputs": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": 1,
                    "items": {"oneOf": tensors},
                },
                "outputs": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["name"],
                        "properties": {
                            "name": {"enum": ["probabilities", "predictions"]},
                            "parameters": {
                                "type": "object",
                                "properties": {"binary_data": {"type": "boolean"}},
                            },
                        },
                    },
                },
            },
        }

    schemas: dict[str, Any] = {
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {
                "error": {
                    "type": "object",
                    "required": ["code", "message"],
                    "properties": {
                        "code": {"type": "string"},
                        "message": {"type": "string"},
                        "field": {"type": "string"},
                    },
                }
            },
        },
        "Image": image(255),
        "UnitImage": image(1),
        "PredictRequest": {
            "description": 'Pixels 0-255 ("scale": "raw", the default) or 0-1 ("scale": "unit").',
            "oneOf": [
                predict_request("Image", {"const": "raw", "default": "raw"}, ["instances"]),
                predict_request("UnitImage", {"const": "unit"}, ["instances", "scale"]),
            ],
        },
        "PredictResponse": {
            "type": "object",
            "required": ["model", "model_version", "predictions", "probabilities"],
            "properties": {
                "model": {"type": "string"},
                "model_version": {"type": "integer"},
                "predictions": {"type": "array", "items": {"type": "integer"}},
                "probabilities": {
                    "type": "array",
                    "items": {
                        "type": "array",
                        "minItems": 10,
                        "maxItems": 10,
                        "items": {"type": "number"},
                    },
                },
            },
        },
        "ModelSummary": {
            "type": "object",
            "required": ["name", "latest_version", "default_version"],
            "properties": {
                "name": {"type": "string"},
                "latest_version": _nullable("integer"),
                "default_version": _nullable("integer"),
                "pinned_version": _nullable("integer"),
                "serving_version": {
                    "type": ["integer", "null"],
                    "description": "Version this worker serves by default right now.",
                },
                "versions": {"type": "array", "items": {"type": "integer"}},
                "aliases": {"type": "object", "additionalProperties": {"type": "integer"}},
            },
        },
        "VersionSummary": {
            "type": "object",
            "required": ["version", "status", "default", "loaded"],
            "properties": {
                "version": {"type": "integer"},
                "status": {"type": "string", "enum": ["ok", "broken"]},
                "error": _nullable("string"),
                "created_at": _nullable("string"),
                "sha256": _nullable("string"),
                "metrics": _nullable("object"),
                "config": _nullable("object"),
                "files": {
                    "type": "array",
                    "items": {"type": "string"},
                    "description": "Files published with the version (its training report), "
                    "served by getReportFile.",
                },
                "aliases": {"type": "array", "items": {"type": "string"}},
                "default": {"type": "boolean"},
                "pinned": {"type": "boolean"},
                "loaded": {"type": "boolean", "description": "Loaded in this worker."},
            },
        },
        "ModelDetail": {
            "type": "object",
            "required": ["name", "versions"],
            "properties": {
                "name": {"type": "string"},
                "latest_version": _nullable("integer"),
                "default_version": _nullable("integer"),
                "pinned_version": _nullable("integer"),
                "serving_version": _nullable("integer"),
                "aliases": {"type": "object", "additionalProperties": {"type": "integer"}},
                "versions": {"type": "array", "items": _ref("VersionSummary")},
                "history": {"type": "array", "items": {"type": "object"}},
            },
        },
        "Manifest": {
            "type": "object",
            "required": ["version", "sha256", "created_at"],
            "description": "The registry manifest plus status, aliases, default and loaded.",
            "properties": {
                "version": {"type": "integer"},
                "sha256": {"type": "string"},
                "size_bytes": {"type": "integer"},
                "created_at": {"type": "string"},
                "package_version": {"type": "string"},
                "config": {"type": "object"},
                "metrics": {"type": "object"},
                "files": {
                    "type": "object",
                    "description": "file name → {sha256, size_bytes}: the training report.",
                    "additionalProperties": {
                        "type": "object",
                        "properties": {
                            "sha256": {"type": "string"},
                            "size_bytes": {"type": "integer"},
                        },
                    },
                },
                "status": {"type": "string", "enum": ["ok"]},
                "aliases": {"type": "array", "items": {"type": "string"}},
                "default": {"type": "boolean"},
                "loaded": {"type": "boolean"},
            },
        },
        "Readiness": {
            "type": "object",
            "required": ["ready", "models"],
            "properties": {
                "ready": {"type": "boolean"},
                "reason": {"type": "string"},
                "missing": {"type": "array", "items": {"type": "string"}},
                "models": {"type": "object"},
                "pid": {"type": "integer"},
            },
        },
        "V2InferRequest": v2_request(
            [
                v2_tensor("FP32", {"type": "number", "minimum": 0, "maximum": 1}),
                v2_tensor("UINT8", {"type": "integer", "minimum": 0, "maximum": 255}),
            ]
        ),
        "V2BinaryInferHeader": v2_request([v2_tensor("FP32", None), v2_tensor("UINT8", None)]),
        "V2InferResponse": {
            "type": "object",
            "required": ["model_name", "model_version", "outputs"],
            "properties": {
                "model_name": {"type": "string"},
                "model_version": {"type": "string"},
                "id": {"type": "string"},
                "outputs": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["name", "datatype", "shape"],
                        "properties": {
                            "name": {"type": "string"},
                            "datatype": {"type": "string", "enum": ["FP32", "INT64"]},
                            "shape": {"type": "array", "items": {"type": "integer"}},
                            "data": {"type": "array", "items": {"type": "number"}},
                            "parameters": {"type": "object"},
                        },
                    },
                },
            },
        },
        "V2ModelMetadata": {
            "type": "object",
            "required": ["name", "versions", "platform", "inputs", "outputs"],
            "properties": {
                "name": {"type": "string"},
                "versions": {"type": "array", "items": {"type": "string"}},
                "platform": {"type": "string"},
                "inputs": {"type": "array", "items": {"type": "object"}},
                "outputs": {"type": "array", "items": {"type": "object"}},
            },
        },
    }

    picture = {"schema": {"type": "string", "format": "binary"}}
    predict_body = {
        "required": True,
        "content": {
            "application/json": {"schema": _ref("PredictRequest")},
            "application/x-npy": {
                "schema": {
                    "type": "string",
                    "format": "binary",
                    "description": "A .npy file (numpy.save) of shape [N, 784] or [N, 28, 28]: "
                    "uint8 pixels 0-255 or float32 pixels 0-1.",
                }
            },
            "image/png": picture,
            "image/jpeg": picture,
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["image"],
                    "properties": {
                        "image": {
                            "type": "string",
                            "format": "binary",
                            "description": "One picture (repeat the field for a batch).",
                        }
                    },
                }
            },
        },
    }
    model_version_header = {
        "X-Model-Version": {
            "description": "The model version that answered.",
            "schema": {"type": "string"},
        }
    }
    predict_responses = {
        "200": {
            "description": "Predictions.",
            "headers": model_version_header,
            "content": {"application/json": {"schema": _ref("PredictResponse")}},
        },
        "400": _E400,
        "404": _E404,
        "409": _E409,
        "413": _E413,
        "415": _E415,
        "422": _E422,
        "503": _E503,
    }
    infer_body = {
        "required": True,
        "description": "JSON (schema V2InferRequest). The binary tensor extension is supported "
        "too: send a JSON header (schema V2BinaryInferHeader, inputs with "
        "parameters.binary_data_size), its byte length in the Inference-Header-Content-Length "
        "header, and the raw little-endian tensor bytes right after it. Ask for binary outputs "
        "with parameters.binary_data_output or outputs[].parameters.binary_data; the response "
        "is then application/octet-stream with Inference-Header-Content-Length.",
        "content": {"application/json": {"schema": _ref("V2InferRequest")}},
    }
    infer_responses = {
        "200": {
            "description": "Inference result (binary outputs: application/octet-stream with "
            "Inference-Header-Content-Length).",
            "headers": model_version_header,
            "content": {
                "application/json": {"schema": _ref("V2InferResponse")},
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            },
        },
        "400": _E400,
        "404": _E404,
        "409": _E409,
        "413": _E413,
        "415": _E415,
        "422": _E422,
        "503": _E503,
    }

    def get(op_id: str, summary: str, responses: dict, params: list | None = None) -> dict:
        op: dict[str, Any] = {"operationId": op_id, "summary": summary, "responses": responses}
        if params:
            op["parameters"] = params
        return {"get": op}

    def post(op_id: str, summary: str, body: dict, responses: dict, params: list) -> dict:
        return {
            "post": {
                "operationId": op_id,
                "summary": summary,
                "parameters": params,
                "requestBody": body,
                "responses": responses,
            }
        }

    v2_meta_responses = {
        "200": _json(_ref("V2ModelMetadata")),
        "404": _E404,
        "409": _E409,
        "503": _E503,
    }
    ready_schema = {
        "type": "object",
        "required": ["name", "version", "ready"],
        "properties": {
            "name": {"type": "string"},
            "version": {"type": "string"},
            "ready": {"type": "boolean"},
        },
    }
    v2_ready_responses = {
        "200": _json(ready_schema, "The version is loaded (loads it on demand)."),
        "404": _E404,
        "409": _E409,
        "503": _E503,
    }
    paths: dict[str, Any] = {
        "/": get(
            "webPage",
            "The web page: draw a digit, browse versions and reports, train (HTML).",
            {"200": {"description": "HTML page.", "content": {"text/html": {}}}},
        ),
        "/healthz": get(
            "healthz",
            "Liveness: the worker answers.",
            {
                "200": _json(
                    {
                        "type": "object",
                        "required": ["status"],
                        "properties": {"status": {"type": "string"}, "pid": {"type": "integer"}},
                    }
                )
            },
        ),
        "/readyz": get(
            "readyz",
            "Readiness: every model's default version is loaded in this worker.",
            {
                "200": _json(_ref("Readiness"), "Ready."),
                "503": _json(
                    _ref("Readiness"),
                    "Not ready: what is missing (an empty registry is not ready).",
                ),
            },
        ),
        "/metrics": get(
            "metrics",
            "Prometheus metrics (all workers aggregated under gunicorn).",
            {"200": {"description": "Prometheus text format.", "content": {"text/plain": {}}}},
        ),
        "/openapi.json": get(
            "openapi", "This document.", {"200": _json({"type": "object"}, "OpenAPI 3 document.")}
        ),
        "/v1/models": get(
            "listModels",
            "Models with their latest, default and pinned version.",
            {
                "200": _json(
                    {
                        "type": "object",
                        "required": ["models"],
                        "properties": {"models": {"type": "array", "items": _ref("ModelSummary")}},
                    }
                ),
                "503": _E503,
            },
        ),
        "/v1/models/{name}": get(
            "getModel",
            "Every version with metrics, config, aliases, status and whether it is loaded.",
            {"200": _json(_ref("ModelDetail")), "404": _E404, "503": _E503},
            [NAME_PARAM],
        ),
        "/v1/models/{name}/versions/{ref}": get(
            "getVersion",
            "One version's manifest.",
            {"200": _json(_ref("Manifest")), "404": _E404, "409": _E409, "503": _E503},
            [NAME_PARAM, REF_PARAM],
        ),
        "/v1/models/{name}/versions/{ref}/report/{file_name}": get(
            "getReportFile",
            "A file of the version's training report (learning_curves.png, "
            "confusion_matrix.png, per_class.png, misclassified.png, report.json): only files "
            "listed in the manifest's files, verified by sha256. Numbered versions are served "
            "as immutable (ETag = sha256).",
            {
                "200": {
                    "description": "The file; image/png, application/json, ...",
                    "content": {
                        "image/png": {"schema": {"type": "string", "format": "binary"}},
                        "application/json": {"schema": {"type": "object"}},
                    },
                },
                "304": {"description": "Not modified (If-None-Match matched the ETag)."},
                "404": _E404,
                "409": _E409,
                "503": _E503,
            },
            [
                NAME_PARAM,
                REF_PARAM,
                {
                    "name": "file_name",
                    "in": "path",
                    "required": True,
                    "description": "A file name listed in the version's manifest files.",
                    "schema": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"},
                },
            ],
        ),
        "/v1/models/{name}/predict": post(
            "predict",
            "Predict with the default version (pinned, else latest).",
            predict_body,
            predict_responses,
            [NAME_PARAM],
        ),
        "/v1/models/{name}/versions/{ref}/predict": post(
            "predictVersion",
            "Predict with a named version, latest, or an alias.",
            predict_body,
            predict_responses,
            [NAME_PARAM, REF_PARAM],
        ),
        "/v2": get(
            "v2ServerMetadata",
            "Open Inference Protocol server metadata.",
            {
                "200": _json(
                    {
                        "type": "object",
                        "required": ["name", "version", "extensions"],
                        "properties": {
                            "name": {"type": "string"},
                            "version": {"type": "string"},
                            "extensions": {"type": "array", "items": {"type": "string"}},
                        },
                    }
                )
            },
        ),
        "/v2/health/live": get(
            "v2Live",
            "Server live.",
            {
                "200": _json(
                    {"type": "object", "properties": {"live": {"type": "boolean"}}},
                )
            },
        ),
        "/v2/health/ready": get(
            "v2Ready",
            "Server ready (same condition as /readyz).",
            {
                "200": _json({"type": "object", "properties": {"ready": {"type": "boolean"}}}),
                "503": _json(
                    {"type": "object", "properties": {"ready": {"type": "boolean"}}},
                    "Not ready.",
                ),
            },
        ),
        "/v2/models/{name}": get(
            "v2ModelMetadata", "Model metadata.", v2_meta_responses, [NAME_PARAM]
        ),
        "/v2/models/{name}/versions/{ref}": get(
            "v2VersionMetadata", "Model metadata.", v2_meta_responses, [NAME_PARAM, REF_PARAM]
        ),
        "/v2/models/{name}/ready": get(
            "v2ModelReady", "Default version ready.", v2_ready_responses, [NAME_PARAM]
        ),
        "/v2/models/{name}/versions/{ref}/ready": get(
            "v2VersionReady", "Version ready.", v2_ready_responses, [NAME_PARAM, REF_PARAM]
        ),
        "/v2/models/{name}/infer": post(
            "v2Infer",
            "Inference with the default version.",
            infer_body,
            infer_responses,
            [NAME_PARAM],
        ),
        "/v2/models/{name}/versions/{ref}/infer": post(
            "v2InferVersion",
            "Inference with a named version, latest, or an alias.",
            infer_body,
            infer_responses,
            [NAME_PARAM, REF_PARAM],
        ),
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "digitflow inference",
            "version": shared.__version__,
            "description": "Handwritten-digit predictions from versioned NumPy models. Every "
            'error is {"error": {"code", "message", "field"?}}; 405 (with Allow) for a wrong '
            "method; never a 500 for bad input.",
        },
        "paths": paths,
        "components": {"schemas": schemas},
    }


def spec_bytes(max_batch_images: int = 1024) -> bytes:
    return orjson.dumps(build_spec(max_batch_images), option=orjson.OPT_INDENT_2)


if __name__ == "__main__":
    sys.stdout.write(spec_bytes().decode() + "\n")
