"""A small client for the digitflow services: a Python class and the `digitflow` command (its
commands: the README's "Client" section and `digitflow --help`).

    from shared.client import DigitflowClient
    client = DigitflowClient()                      # TRAINER_URL / INFERENCE_URL / API_TOKEN
    job = client.submit({"preset": "seed-deep", "epochs": 3})
    final = client.wait(job["job_id"], on_progress=print)
    client.predict_file("digit.png")                # default version
    client.predict_file("digit.png", version=1)     # a pinned one

Every HTTP error becomes a `DigitflowError` carrying the server's JSON message; the CLI prints it
and exits with status 2, as it does for arguments it cannot use. Every request has a timeout.
"""

from __future__ import annotations

import argparse
import json
import mimetypes
import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

import requests

from shared.fsutil import write_atomic

DEFAULT_TRAINER_URL = "http://127.0.0.1:8001"
DEFAULT_INFERENCE_URL = "http://127.0.0.1:8000"
#: A job's statuses (GET /v1/jobs/<id>), and those it never leaves.
JOB_STATUSES = ("queued", "started", "finished", "pruned", "failed", "canceled", "stopped")
TERMINAL_STATUSES = frozenset(JOB_STATUSES) - {"queued", "started"}

#: (connect, read) seconds for each request.
DEFAULT_TIMEOUT = (5.0, 60.0)


class DigitflowError(Exception):
    """An HTTP error from a service (or a connection failure), with the server's message."""

    def __init__(self, message: str, status: int | None = None, body: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = body


def _error_message(body: Any) -> str | None:
    """The human message from either service's error shape."""
    if not isinstance(body, dict):
        return None
    error = body.get("error")
    if isinstance(error, dict):
        message = error.get("message") or error.get("code")
        fields = error.get("fields")
        if isinstance(fields, list) and fields:
            details = "; ".join(
                f"{f.get('field')}: {f.get('message')}" for f in fields if isinstance(f, dict)
            )
            message = f"{message} ({details})"
        elif isinstance(error.get("field"), str) and error["field"] not in str(message):
            message = f"{message} (field {error['field']})"
        return message
    return error if isinstance(error, str) else None


class DigitflowClient:
    """Talks to the trainer API (jobs, pins) and the inference API (models, predictions)."""

    def __init__(
        self,
        trainer_url: str | None = None,
        inference_url: str | None = None,
        token: str | None = None,
        *,
        timeout: float | tuple[float, float] = DEFAULT_TIMEOUT,
        session: requests.Session | None = None,
    ) -> None:
        self.trainer_url = (
            trainer_url or os.environ.get("TRAINER_URL") or DEFAULT_TRAINER_URL
        ).rstrip("/")
        self.inference_url = (
            inference_url or os.environ.get("INFERENCE_URL") or DEFAULT_INFERENCE_URL
        ).rstrip("/")
        self.token = token if token is not None else (os.environ.get("API_TOKEN") or None)
        self.timeout = timeout
        self.session = session or requests.Session()

    # ---- plumbing -----------------------------------------------------------------------------

    def _request(
        self, method: str, url: str, *, expect: Iterable[int] = (200,), **kwargs: Any
    ) -> requests.Response:
        headers = dict(kwargs.pop("headers", None) or {})
        if self.token and method.upper() in ("POST", "PUT", "PATCH", "DELETE"):
            headers["Authorization"] = f"Bearer {self.token}"
        try:
            response = self.session.request(
                method, url, headers=headers, timeout=self.timeout, **kwargs
            )
        except requests.RequestException as exc:
            raise DigitflowError(f"cannot reach {url}: {exc.__class__.__name__}: {exc}") from exc
        if response.status_code not in expect:
            try:
                body = response.json()
            except ValueError:
                body = response.text[:500]
            message = _error_message(body) or (body if isinstance(body, str) else "") or "error"
            raise DigitflowError(
                f"{method} {url} → HTTP {response.status_code}: {message}",
                status=response.status_code,
                body=body,
            )
        return response

    def _trainer(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._request(method, self.trainer_url + path, **kwargs).json()

    def _inference(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._request(method, self.inference_url + path, **kwargs).json()

    # ---- jobs (trainer) ----------------------------------------------------------------------

    def submit(self, config: dict[str, Any], *, idempotency_key: str | None = None) -> dict:
        """Queue a training job; returns {"job_id", "status", "model", "location"}."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return self._trainer("POST", "/v1/jobs", json=config, headers=headers, expect=(202,))

    def status(self, job_id: str) -> dict:
        return self._trainer("GET", f"/v1/jobs/{job_id}")

    def jobs(self, status: str | None = None, limit: int = 20) -> list[dict]:
        # requests leaves out a parameter whose value is None
        params = {"limit": limit, "status": status or None}
        return self._trainer("GET", "/v1/jobs", params=params)["jobs"]

    def cancel(self, job_id: str) -> dict:
        """Cancel a queued job or stop a running one."""
        return self._trainer("DELETE", f"/v1/jobs/{job_id}", expect=(200, 202))

    def wait(
        self,
        job_id: str,
        on_progress: Callable[[dict], None] | None = None,
        *,
        poll: float = 1.0,
        timeout: float | None = None,
    ) -> dict:
        """Poll until the job ends; `on_progress(job)` is called whenever its epoch or status
        changes. Returns the final job. Raises DigitflowError after `timeout` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        last: tuple | None = None
        while True:
            job = self.status(job_id)
            progress = job.get("progress") or {}
            marker = (job.get("status"), progress.get("epoch"), job.get("phase"))
            if on_progress is not None and marker != last:
                on_progress(job)
            last = marker
            if job.get("status") in TERMINAL_STATUSES:
                return job
            if deadline is not None and time.monotonic() > deadline:
                raise DigitflowError(f"job {job_id} still {job.get('status')} after {timeout} s")
            time.sleep(poll)

    # ---- sweeps (trainer) --------------------------------------------------------------------

    def sweep(self, body: dict[str, Any], *, idempotency_key: str | None = None) -> dict:
        """Start a sweep; returns {"sweep_id", "status", "model", "location"}."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return self._trainer("POST", "/v1/sweeps", json=body, headers=headers, expect=(202,))

    def sweep_status(self, sweep_id: str) -> dict:
        return self._trainer("GET", f"/v1/sweeps/{sweep_id}")

    def sweep_report(self, sweep_id: str) -> bytes:
        """The sweep report PNG (GET /v1/sweeps/<id>/report.png)."""
        return self._request("GET", f"{self.trainer_url}/v1/sweeps/{sweep_id}/report.png").content

    def cancel_sweep(self, sweep_id: str) -> dict:
        return self._trainer("DELETE", f"/v1/sweeps/{sweep_id}")

    def wait_sweep(
        self,
        sweep_id: str,
        on_progress: Callable[[dict], None] | None = None,
        *,
        poll: float = 1.0,
        timeout: float | None = None,
    ) -> dict:
        """Poll until the sweep ends; `on_progress(sweep)` runs whenever a trial's status or
        curve changes. Returns the final sweep."""
        deadline = None if timeout is None else time.monotonic() + timeout
        last: tuple | None = None
        while True:
            sweep = self.sweep_status(sweep_id)
            marker = (
                sweep.get("status"),
                tuple((t["status"], len(t["curve"])) for t in sweep.get("trials", [])),
            )
            if on_progress is not None and marker != last:
                on_progress(sweep)
            last = marker
            if sweep.get("status") != "running":
                return sweep
            if deadline is not None and time.monotonic() > deadline:
                raise DigitflowError(f"sweep {sweep_id} still running after {timeout} s")
            time.sleep(poll)

    # ---- models ------------------------------------------------------------------------------

    def models(self, service: Literal["inference", "trainer"] = "inference") -> list[dict]:
        """Every model with its versions, latest, default and pinned version, aliases, traffic
        split and shadow (`shared.registry.ModelSummary`: one shape on both services), from the
        service named; inference adds the version each model is served by now
        (`serving_version`)."""
        ask = self._trainer if service == "trainer" else self._inference
        return ask("GET", "/v1/models")["models"]

    def model(self, name: str) -> dict:
        return self._inference("GET", f"/v1/models/{name}")

    def pin(self, name: str, version: int) -> dict:
        return self._trainer("PUT", f"/v1/models/{name}/pin", json={"version": int(version)})

    def unpin(self, name: str) -> dict:
        return self._trainer("DELETE", f"/v1/models/{name}/pin")

    def set_alias(self, name: str, alias: str, version: int) -> dict:
        return self._trainer(
            "PUT", f"/v1/models/{name}/aliases/{alias}", json={"version": int(version)}
        )

    def delete_alias(self, name: str, alias: str) -> dict:
        return self._trainer("DELETE", f"/v1/models/{name}/aliases/{alias}")

    def set_traffic(self, name: str, routes: Sequence[tuple[int | str, int]]) -> dict:
        """Split the default route over versions: (version number or alias, weight percent)
        pairs, weights summing to 100 (the trainer checks and names what is wrong)."""
        body = {"routes": [{"version": ref, "weight": weight} for ref, weight in routes]}
        return self._trainer("PUT", f"/v1/models/{name}/traffic", json=body)

    def clear_traffic(self, name: str) -> dict:
        return self._trainer("DELETE", f"/v1/models/{name}/traffic")

    def set_shadow(self, name: str, ref: int | str) -> dict:
        """Name the shadow version (a number or an alias, followed as it moves)."""
        return self._trainer("PUT", f"/v1/models/{name}/shadow", json={"version": ref})

    def clear_shadow(self, name: str) -> dict:
        return self._trainer("DELETE", f"/v1/models/{name}/shadow")

    def set_retention(self, name: str, keep_last: int) -> dict:
        """Keep the newest `keep_last` versions: older ones are deleted after each publish,
        never one in use."""
        body = {"keep_last": int(keep_last)}
        return self._trainer("PUT", f"/v1/models/{name}/retention", json=body)

    def clear_retention(self, name: str) -> dict:
        return self._trainer("DELETE", f"/v1/models/{name}/retention")

    # ---- predictions (inference) -------------------------------------------------------------

    @staticmethod
    def _predict_path(model: str, version: int | str | None) -> str:
        if version is None or version == "default":
            return f"/v1/models/{model}/predict"
        return f"/v1/models/{model}/versions/{version}/predict"

    def predict(
        self,
        images: Any,
        model: str = "mnist",
        version: int | str | None = None,
        *,
        scale: str | None = None,
    ) -> dict:
        """Predict digits for images: a list/array of 784 numbers or 28x28 rows each, 0-255
        (or 0-1 with scale="unit"). Returns {"model", "model_version", "predictions", ...}."""
        if hasattr(images, "tolist"):
            images = images.tolist()
        body: dict[str, Any] = {"instances": list(images)}
        if scale:
            body["scale"] = scale
        return self._inference("POST", self._predict_path(model, version), json=body)

    def predict_file(
        self, path: str | os.PathLike[str], model: str = "mnist", version: int | str | None = None
    ) -> dict:
        """Predict the digit in a picture (PNG/JPEG, any size, either polarity)."""
        path = Path(path)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise DigitflowError(f"cannot read {path}: {exc.strerror or exc}") from exc
        content_type = mimetypes.guess_type(path.name)[0]
        if content_type not in ("image/png", "image/jpeg"):
            content_type = "image/png" if data.startswith(b"\x89PNG") else "image/jpeg"
        return self._inference(
            "POST",
            self._predict_path(model, version),
            data=data,
            headers={"Content-Type": content_type},
        )


# ---- CLI ----------------------------------------------------------------------------------------


def _parse_value(raw: str) -> Any:
    """`--field=value`: JSON if it parses (numbers, true/false/null, [..]), else the string."""
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def parse_fields(tokens: Sequence[str]) -> dict[str, Any]:
    """Turn `--epochs=3 --hidden-layers 128,64 --augment` into a TrainConfig-shaped dict.

    Dashes in names become underscores; `hidden_layers` also accepts `128,64`; a flag with no
    value is `true`. The server validates everything and names any bad field.
    """
    fields: dict[str, Any] = {}
    tokens = list(tokens)
    while tokens:
        token = tokens.pop(0)
        if not token.startswith("--") or token == "--":
            raise DigitflowError(f"unexpected argument {token!r}: use --field=value")
        name, eq, raw = token[2:].partition("=")
        if not eq:
            raw = tokens.pop(0) if tokens and not tokens[0].startswith("--") else "true"
        key = name.replace("-", "_")
        if not key:
            raise DigitflowError(f"bad option {token!r}")
        if key == "hidden_layers" and "," in raw and not raw.lstrip().startswith("["):
            value: Any = [_parse_value(part) for part in raw.split(",") if part.strip()]
        elif key == "hidden_layers" and raw.isdigit():
            value = [int(raw)]
        else:
            value = _parse_value(raw)
        fields[key] = value
    return fields


def _fmt(value: Any, spec: str = ".4f") -> str:
    return "-" if value is None else format(value, spec) if isinstance(value, float) else str(value)


def _follow(client: DigitflowClient, job_id: str, out) -> dict:
    """Live per-epoch progress with a tqdm bar; returns the final job."""
    # tqdm: only when a progress bar is shown
    from tqdm import tqdm

    bar = None

    def show(job: dict) -> None:
        nonlocal bar
        progress = job.get("progress") or {}
        epochs = progress.get("epochs") or (job.get("config") or {}).get("epochs")
        if bar is None and job.get("status") == "started" and epochs:
            bar = tqdm(total=epochs, unit="epoch", desc=job_id[:8], file=out, leave=True)
        if bar is not None:
            epoch = progress.get("epoch") or 0
            if epoch > bar.n:
                bar.update(epoch - bar.n)
            bar.set_postfix(
                loss=_fmt(progress.get("train_loss")),
                val_acc=_fmt(progress.get("val_accuracy")),
                refresh=True,
            )
        else:
            print(f"{job_id}: {job.get('status')} {job.get('phase') or ''}".rstrip(), file=out)

    try:
        return client.wait(job_id, on_progress=show)
    finally:
        if bar is not None:
            bar.close()


def _follow_sweep(client: DigitflowClient, sweep_id: str, out) -> dict:
    """One line per trial event (started, each epoch, finished/pruned/failed)."""
    seen: dict[int, tuple] = {}

    def show(sweep: dict) -> None:
        objective = sweep["objective"]
        for t in sweep["trials"]:
            state = (t["status"], len(t["curve"]))
            if seen.get(t["number"]) == state:
                continue
            seen[t["number"]] = state
            last = t["curve"][-1][objective] if t["curve"] else None
            params = ", ".join(f"{k}={v}" for k, v in t["params"].items())
            retry = "" if t.get("retry_of") is None else f" (retry of trial {t['retry_of']})"
            print(
                f"trial {t['number']} [{params}]{retry}: {t['status']}, epoch {len(t['curve'])}, "
                f"{objective} {_fmt(last)}",
                file=out,
            )

    return client.wait_sweep(sweep_id, on_progress=show)


def _save_report(path: Path, png: bytes) -> None:
    """Whole or not at all: a temp file beside `path`, then one rename."""
    try:
        write_atomic(path, png, tmp_prefix=f".{path.name}.tmp-")
    except OSError as exc:
        raise DigitflowError(f"cannot write the report {path}: {exc.strerror or exc}") from exc


def _report_sweep(sweep: dict, out) -> int:
    best = sweep.get("best")
    pruned = sum(1 for t in sweep["trials"] if t["pruned"])
    print(
        f"sweep {sweep['sweep_id']} {sweep['status']}: {len(sweep['trials'])} trials, "
        f"{pruned} pruned",
        file=out,
    )
    if best:
        print(
            f"best: trial {best['number']} {best['params']} {sweep['objective']} "
            f"{_fmt(best['value'])}, {sweep['model']} version {best['model_version']}",
            file=out,
        )
    promotion = sweep.get("promotion")
    if promotion:
        verdict = (
            f"now version {promotion['version']}" if promotion.get("promoted") else "unchanged"
        )
        print(f"alias {promotion['alias']}: {verdict} ({promotion['reason']})", file=out)
    return 0 if sweep["status"] == "finished" and best else 1


def _report_final(job: dict, out) -> int:
    status = job.get("status")
    if status == "finished":
        acc = job.get("test_accuracy")
        acc_text = f", test accuracy {acc:.4f}" if isinstance(acc, float) else ""
        print(
            f"job {job['job_id']} finished: {job.get('model')} version "
            f"{job.get('model_version')}{acc_text}",
            file=out,
        )
        return 0
    print(f"job {job['job_id']} {status}: {job.get('error') or ''}".rstrip(), file=out)
    return 1


def _version_ref(raw: str) -> int | str:
    """A version as the CLI takes it: digits are a version number, anything else an alias
    (the trainer checks both and names what is wrong)."""
    return int(raw) if raw.isdigit() else raw


def _route(raw: str) -> tuple[int | str, int]:
    """`champion=90` or `3=10`: one side of a traffic split, VERSION=WEIGHT."""
    ref, _, weight = raw.rpartition("=")
    if not ref or not weight.isdigit():  # no "=" leaves ref empty too
        raise argparse.ArgumentTypeError(
            f"{raw!r} is not VERSION=WEIGHT (a version number or alias, a whole percent), "
            "e.g. champion=90"
        )
    return _version_ref(ref), int(weight)


def _model_line(m: dict) -> str:
    """One model as `digitflow models` prints it: its registry state on one line, the split and
    shadow only when set (written the way `traffic` and `shadow` take them)."""
    aliases = " ".join(f"{a}={v}" for a, v in sorted((m.get("aliases") or {}).items()))
    parts = [
        f"latest {_fmt(m.get('latest_version'))}",
        f"default {_fmt(m.get('default_version'))}",
        f"pinned {_fmt(m.get('pinned_version'))}",
        f"aliases {aliases or '-'}",
    ]
    if m.get("traffic"):
        parts.append("traffic " + " ".join(f"{r['version']}={r['weight']}" for r in m["traffic"]))
    if m.get("shadow") is not None:
        parts.append(f"shadow {m['shadow']['version']}")
    if m.get("keep_last") is not None:
        parts.append(f"keep last {m['keep_last']}")
    return f"{m.get('name')}: " + ", ".join(parts)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="digitflow", description="Client for the digitflow trainer and inference services."
    )
    parser.add_argument("--trainer-url", help=f"default $TRAINER_URL or {DEFAULT_TRAINER_URL}")
    parser.add_argument(
        "--inference-url", help=f"default $INFERENCE_URL or {DEFAULT_INFERENCE_URL}"
    )
    parser.add_argument("--token", help="API token for mutating calls (default $API_TOKEN)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help: str, *positionals: str, **kwargs: Any) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, **kwargs)
        for positional in positionals:
            p.add_argument(positional)
        return p

    p = sub.add_parser(
        "submit",
        help="queue a training job",
        description="Queue a training job. Any TrainConfig field can be given as --field=value "
        "(e.g. --epochs=3 --hidden-layers=128,64 --model=mnist).",
    )
    p.add_argument(
        "--preset",
        help="default | seed-basic | seed-deep | best | fashion | fashion-best | cnn | cnn-best | "
        "fashion-cnn",
    )
    p.add_argument("--config", help="JSON file with a TrainConfig (fields given here override)")
    p.add_argument("--idempotency-key", help="makes a retried submit return the same job")
    p.add_argument("--wait", action="store_true", help="follow the job until it ends")

    command("status", "show a job as JSON", "job_id")
    command("wait", "follow a job's per-epoch progress until it ends", "job_id")
    command("cancel", "cancel a queued job or stop a running one", "job_id")
    p = sub.add_parser("jobs", help="list recent jobs")
    p.add_argument("--status", help=f"filter: {','.join(JOB_STATUSES)}")
    p.add_argument("--limit", type=int, default=20)

    p = command(
        "sweep", "start a hyperparameter sweep from a JSON file (the POST /v1/sweeps body)", "file"
    )
    p.add_argument("--idempotency-key", help="makes a retried sweep return the same sweep")
    p.add_argument("--wait", action="store_true", help="follow the trials until the sweep ends")
    p.add_argument("--report", metavar="FILE.png", help="then save the sweep report PNG there")
    command(
        "cancel-sweep", "cancel a sweep: queued trials canceled, running ones stopped", "sweep_id"
    )

    sub.add_parser(
        "models",
        help="list models: latest, default and pinned version, aliases, traffic split, shadow, "
        "retention",
    )
    p = command("pin", "pin a model's default version", "name")
    p.add_argument("version", type=int)
    command("unpin", "let the default follow the latest version again", "name")
    p = command("alias", "point an alias (champion, candidate, ...) at a version", "name", "alias")
    p.add_argument("version", type=int)
    command("unalias", "delete an alias", "name", "alias")
    # traffic, shadow and retention: a rule as `value`, or --clear (see `run`)
    p = command(
        "traffic",
        "split the default predict route over versions, or --clear the split",
        "name",
        description="Split the default predict route: VERSION=WEIGHT per route (a version "
        "number or an alias, followed as it moves; whole percents summing to 100), e.g. "
        "`digitflow traffic digits champion=90 candidate=10`; --clear serves the default "
        "version again.",
    )
    p.add_argument("value", nargs="*", type=_route, metavar="VERSION=WEIGHT")
    p.add_argument("--clear", action="store_true", help="drop the split")
    p = command(
        "shadow",
        "name the shadow version (a number or an alias), or --clear it",
        "name",
        description="The shadow version also answers every default-route request, unseen, "
        "after the answer is sent; inference keeps the agreement figures.",
    )
    p.add_argument(
        "value",
        nargs="?",
        type=_version_ref,
        metavar="version",
        help="a version number or an alias",
    )
    p.add_argument("--clear", action="store_true", help="stop shadowing")
    p = command(
        "retention",
        "keep only a model's newest N versions, or --clear the rule",
        "name",
        description="After each publish, versions older than the newest N are deleted, except "
        "those a pin, alias, traffic route or shadow names and those of a running job or sweep.",
    )
    p.add_argument("value", nargs="?", type=int, metavar="N")
    p.add_argument("--clear", action="store_true", help="keep every version again")

    p = command("predict", "predict the digit in a picture", "file")
    p.add_argument("--model", default="mnist")
    p.add_argument("--version", help="a version number, 'latest' or an alias (default: default)")
    return parser


def run(argv: Sequence[str] | None = None, out=None) -> int:
    out = out or sys.stdout
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "submit":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    client = DigitflowClient(args.trainer_url, args.inference_url, args.token)

    def say(line: str) -> None:
        print(line, file=out)

    if args.command == "submit":
        config: dict[str, Any] = {}
        if args.config:
            try:
                config = json.loads(Path(args.config).read_text())
            except (OSError, ValueError) as exc:
                raise DigitflowError(f"cannot read config {args.config}: {exc}") from exc
            if not isinstance(config, dict):
                raise DigitflowError(f"{args.config} must hold a JSON object")
        if args.preset:
            config["preset"] = args.preset
        config.update(parse_fields(extra))
        job = client.submit(config, idempotency_key=args.idempotency_key)
        say(f"job {job['job_id']} {job['status']} (model {job.get('model')})")
        if args.wait:
            return _report_final(_follow(client, job["job_id"], out), out)
    elif args.command == "sweep":
        try:
            body = json.loads(Path(args.file).read_text())
        except (OSError, ValueError) as exc:
            raise DigitflowError(f"cannot read sweep {args.file}: {exc}") from exc
        sweep = client.sweep(body, idempotency_key=args.idempotency_key)
        say(f"sweep {sweep['sweep_id']} {sweep['status']} (model {sweep['model']})")
        code = 0
        if args.wait:
            code = _report_sweep(_follow_sweep(client, sweep["sweep_id"], out), out)
        if args.report:
            _save_report(Path(args.report), client.sweep_report(sweep["sweep_id"]))
            say(f"report: {args.report}")
        return code
    elif args.command == "cancel-sweep":
        sweep = client.cancel_sweep(args.sweep_id)
        say(f"sweep {sweep['sweep_id']}: {sweep['status']}")
    elif args.command == "status":
        say(json.dumps(client.status(args.job_id), indent=2))
    elif args.command == "wait":
        return _report_final(_follow(client, args.job_id, out), out)
    elif args.command == "cancel":
        job = client.cancel(args.job_id)
        say(f"job {job['job_id']}: {job['status']}")
    elif args.command == "jobs":
        for job in client.jobs(args.status, args.limit):
            progress = job.get("progress") or {}
            epoch = f"{progress.get('epoch')}/{progress.get('epochs')}" if progress else "-"
            trial = (
                f"  sweep {job['sweep_id']} trial {job.get('trial')}" if job.get("sweep_id") else ""
            )
            say(
                f"{job['job_id']}  {job['status']:<9} {job.get('model') or '-':<16} "
                f"epoch {epoch:<7} version {_fmt(job.get('model_version'))}{trial}"
            )
    elif args.command == "models":
        for m in client.models("trainer"):
            say(_model_line(m))
    elif args.command == "pin":
        state = client.pin(args.name, args.version)
        say(f"{args.name}: default version is now {state.get('default_version')}")
    elif args.command == "unpin":
        state = client.unpin(args.name)
        say(f"{args.name}: unpinned, default version {state.get('default_version')}")
    elif args.command == "alias":
        say(_model_line(client.set_alias(args.name, args.alias, args.version)))
    elif args.command == "unalias":
        say(_model_line(client.delete_alias(args.name, args.alias)))
    elif args.command in ("traffic", "shadow", "retention"):
        if args.clear == (args.value not in (None, [])):
            takes = {"traffic": "VERSION=WEIGHT routes", "shadow": "a VERSION", "retention": "N"}
            parser.error(f"{args.command}: give {takes[args.command]} or --clear (one of the two)")
        set_rule, clear_rule = {
            "traffic": (client.set_traffic, client.clear_traffic),
            "shadow": (client.set_shadow, client.clear_shadow),
            "retention": (client.set_retention, client.clear_retention),
        }[args.command]
        say(_model_line(clear_rule(args.name) if args.clear else set_rule(args.name, args.value)))
    elif args.command == "predict":
        version = None if args.version is None else _version_ref(args.version)
        result = client.predict_file(args.file, model=args.model, version=version)
        predictions = result.get("predictions") or []
        probs = result.get("probabilities") or []
        confidence = max(probs[0]) if probs and probs[0] else None
        say(
            f"{args.file}: {predictions[0] if predictions else '?'}"
            + (f" (p={confidence:.3f})" if confidence is not None else "")
            + f"  [{result.get('model')} v{result.get('model_version')}]"
        )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `digitflow` command: errors → message on stderr, exit status 2."""
    try:
        return run(argv)
    except DigitflowError as exc:
        print(f"digitflow: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("digitflow: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
