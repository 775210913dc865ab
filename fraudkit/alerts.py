"""The alert path: render an alert, send it once through Amazon SES, and invoke the handler.

The stream sends one event per micro-batch, ``{"alerts": [...], "batch_id": N}``. For each
alert, :func:`send_alerts` claims the transaction id in a DynamoDB ledger with a conditional
put, sends the e-mail with SES, and marks the claim ``sent``. A transaction already sent is
skipped, so retries and replays of the same batch send each alert once. When SES refuses, the
claim is deleted (a retry may send), the failure is reported, and :func:`raise_for_failures`
makes the handler raise after the other alerts went out: Lambda then retries the event.

The Lambda entry point (``services/alert_lambda/handler.py``) only loads the settings and calls
:func:`handle_alert_event`. :func:`invoke_alert_handler` calls it in-process (``alert_invoke:
local``; moto cannot run Lambda code without Docker) or through ``lambda.invoke``.
"""

from __future__ import annotations

import html
import importlib
import json
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from fraudkit.aws import client
from fraudkit.config import ConfigError, Settings

#: The in-process handler for ``alert_invoke: local``, imported by name so that fraudkit does
#: not import ``services`` statically.
LOCAL_HANDLER = "services.alert_lambda.handler:lambda_handler"
#: The same handler, as Lambda names it.
LAMBDA_HANDLER = "services.alert_lambda.handler.lambda_handler"
LAMBDA_RUNTIME = "python3.11"
LAMBDA_TIMEOUT_S = 30
LAMBDA_MEMORY_MB = 256
#: The IAM role created in moto for a local deploy (real deployments pass their own role).
LOCAL_ROLE_NAME = "fraudkit-alert-lambda"
#: A ``sending`` claim older than this was left by a run that died: it may be taken again.
#: Far longer than the Lambda timeout, so a live run never loses its claim.
CLAIM_STALE_AFTER_S = 300.0

SENDING = "sending"
SENT = "sent"


class AlertDeliveryError(RuntimeError):
    """Some alerts were not delivered (SES refused, or another run holds the claim).

    Attributes:
        result: the per-alert result of :func:`send_alerts`, when known.
    """

    def __init__(self, message: str, result: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.result = result


# --------------------------------------------------------------------------------------------
# The event


class _Strict(BaseModel):
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)


class TopFeature(_Strict):
    """One feature's contribution to the score (a SHAP value; positive raises the risk)."""

    feature: str = Field(min_length=1)
    value: float
    contribution: float
    direction: str


class Alert(_Strict):
    """One flagged transaction with its explanation, as the stream sends it."""

    tx_id: str = Field(min_length=1, max_length=200)
    score: float = Field(ge=0, le=1)
    threshold: float = Field(ge=0, le=1)
    amount: float
    time: float
    reason: str
    actions: list[str] = Field(default_factory=list)
    confidence: float = Field(ge=0, le=1)
    provider: str
    top_features: list[TopFeature] = Field(default_factory=list)


class AlertEvent(_Strict):
    """The event's envelope; each alert is validated on its own by :func:`send_alerts`."""

    alerts: list[Any]
    batch_id: int | None = None
    #: Who sends: the same ``attempt`` again means the earlier try of this very batch died
    #: (the stream uses its checkpoint and batch id: Spark replays a batch only after the
    #: run that started it is gone), so its ``sending`` claims are taken over at once.
    attempt: str | None = Field(default=None, max_length=300)


def _first_error(exc: ValidationError) -> str:
    problems = [
        f"{'.'.join(str(p) for p in err['loc']) or 'alert'}: {err['msg']}" for err in exc.errors()
    ]
    return "; ".join(problems)


# --------------------------------------------------------------------------------------------
# Rendering


@dataclass(frozen=True)
class RenderedAlert:
    """An alert e-mail: subject, plain-text body and HTML body."""

    subject: str
    text: str
    html: str


_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


def _one_line(text: str, limit: int = 120) -> str:
    """Text safe for a mail header: no line breaks or control characters, bounded length."""
    flat = _CONTROL.sub(" ", text).strip()
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def render_alert(alert: Alert | Mapping[str, Any]) -> RenderedAlert:
    """Render one alert as an e-mail.

    Args:
        alert: an :class:`Alert`, or a mapping that validates as one.

    Returns:
        The subject (naming the transaction and its score), a text body and an HTML body with
        the score against the threshold, the amount, the reason, the recommended actions and a
        table of the top features. Every value in the HTML is escaped.

    Raises:
        pydantic.ValidationError: when ``alert`` is a mapping that is not a valid alert.
    """
    a = alert if isinstance(alert, Alert) else Alert.model_validate(alert)
    subject = _one_line(f"Fraud alert: transaction {a.tx_id} scored {a.score:.3f}", 200)
    features = sorted(a.top_features, key=lambda f: abs(f.contribution), reverse=True)

    lines = [
        f"Transaction {a.tx_id} was flagged as possible fraud.",
        "",
        f"Score:      {a.score:.4f} (threshold {a.threshold:.4f})",
        f"Amount:     {a.amount:,.2f}",
        f"Time:       {a.time:,.0f} s after the start of the data",
        f"Confidence: {a.confidence:.2f} ({a.provider})",
        "",
        "Why:",
        f"  {a.reason}",
        "",
        "Recommended actions:",
        *([f"  - {action}" for action in a.actions] or ["  (none given)"]),
        "",
        "Top features (SHAP contribution; positive raises the risk):",
    ]
    if features:
        width = max(len("feature"), *(len(f.feature) for f in features))
        lines.append(f"  {'feature':<{width}}  {'value':>12}  {'contribution':>12}  direction")
        lines += [
            f"  {f.feature:<{width}}  {f.value:>12.4f}  {f.contribution:>+12.4f}  {f.direction}"
            for f in features
        ]
    else:
        lines.append("  (none given)")
    text = "\n".join(lines) + "\n"

    e = html.escape
    actions_html = "".join(f"<li>{e(action)}</li>" for action in a.actions) or "<li>(none)</li>"
    rows = "".join(
        f"<tr><td>{e(f.feature)}</td><td>{f.value:.4f}</td>"
        f"<td>{f.contribution:+.4f}</td><td>{e(f.direction)}</td></tr>"
        for f in features
    )
    body = f"""<html><body>
<h2>Fraud alert: transaction {e(a.tx_id)}</h2>
<table>
<tr><th align="left">Score</th><td>{a.score:.4f} (threshold {a.threshold:.4f})</td></tr>
<tr><th align="left">Amount</th><td>{a.amount:,.2f}</td></tr>
<tr><th align="left">Time</th><td>{a.time:,.0f} s</td></tr>
<tr><th align="left">Confidence</th><td>{a.confidence:.2f} ({e(a.provider)})</td></tr>
</table>
<h3>Why</h3>
<p>{e(a.reason)}</p>
<h3>Recommended actions</h3>
<ul>{actions_html}</ul>
<h3>Top features</h3>
<table border="1" cellpadding="4">
<tr><th>feature</th><th>value</th><th>contribution</th><th>direction</th></tr>
{rows}
</table>
</body></html>
"""
    return RenderedAlert(subject=subject, text=text, html=body)


# --------------------------------------------------------------------------------------------
# Sending once


def _error_text(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        return f"{err.get('Code', 'ClientError')}: {err.get('Message', '')}".strip()
    return f"{type(exc).__name__}: {exc}"


def _claim(
    dynamodb: Any,
    table: str,
    tx_id: str,
    claim_id: str,
    batch_id: int | None,
    now: float,
    stale_after_s: float,
    attempt: str | None = None,
) -> str | None:
    """Claim ``tx_id``; None when claimed, else the status of whoever holds it.

    A ``sending`` claim is taken over when it is stale, or when it was left by the same
    ``attempt`` (an earlier try of this batch that died before marking it sent).
    """
    item = {
        "tx_id": {"S": tx_id},
        "status": {"S": SENDING},
        "claim_id": {"S": claim_id},
        "claimed_at": {"N": repr(now)},
        "attempt": {"S": attempt or claim_id},
    }
    if batch_id is not None:
        item["batch_id"] = {"N": str(batch_id)}
    try:
        dynamodb.put_item(
            TableName=table,
            Item=item,
            ConditionExpression=(
                "attribute_not_exists(tx_id) OR (#s = :sending AND "
                "(claimed_at < :stale_before OR attempt = :attempt))"
            ),
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues={
                ":sending": {"S": SENDING},
                ":stale_before": {"N": repr(now - stale_after_s)},
                ":attempt": {"S": attempt or claim_id},
            },
        )
        return None
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
            raise
    held = dynamodb.get_item(TableName=table, Key={"tx_id": {"S": tx_id}}, ConsistentRead=True)
    status = held.get("Item", {}).get("status", {}).get("S")
    return status or SENDING  # gone again in between: treat as held, a retry will see


def _release(dynamodb: Any, table: str, tx_id: str, claim_id: str) -> None:
    """Delete our own claim so that a retry can send."""
    dynamodb.delete_item(
        TableName=table,
        Key={"tx_id": {"S": tx_id}},
        ConditionExpression="claim_id = :mine",
        ExpressionAttributeValues={":mine": {"S": claim_id}},
    )


def _mark_sent(
    dynamodb: Any, table: str, tx_id: str, claim_id: str, message_id: str, now: float
) -> None:
    dynamodb.update_item(
        TableName=table,
        Key={"tx_id": {"S": tx_id}},
        UpdateExpression="SET #s = :sent, message_id = :mid, sent_at = :at",
        ConditionExpression="claim_id = :mine",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={
            ":sent": {"S": SENT},
            ":mid": {"S": message_id},
            ":at": {"N": repr(now)},
            ":mine": {"S": claim_id},
        },
    )


def send_alerts(
    event: Mapping[str, Any],
    *,
    ses: Any,
    table_name: str,
    dynamodb: Any,
    sender: str,
    recipient: str,
    stale_after_s: float = CLAIM_STALE_AFTER_S,
    now: Callable[[], float] = time.time,
    max_workers: int = 8,
) -> dict[str, Any]:
    """Send each alert of ``event`` once, through SES, with a DynamoDB ledger against repeats.

    Per alert: validate it (invalid -> ``rejected`` with the reason); claim its ``tx_id`` with a
    conditional put (already ``sent`` -> ``duplicate``; a fresh ``sending`` claim of another run
    -> ``in_flight``; a claim older than ``stale_after_s`` is taken over); send with SES; mark
    the claim ``sent`` with the SES MessageId. When SES fails the claim is deleted and the alert
    is ``failed``. Nothing is raised for one alert's failure: the others are still sent.

    Args:
        event: ``{"alerts": [...], "batch_id": int | None, "attempt": str | None}``.
        ses: a boto3 SES (v1) client.
        table_name: the DynamoDB ledger table (hash key ``tx_id``, a string).
        dynamodb: a boto3 DynamoDB client.
        sender: the verified SES sender address.
        recipient: where the alerts go.
        stale_after_s: the age after which a ``sending`` claim counts as abandoned.
        now: the clock, in epoch seconds.
        max_workers: alerts sent at once (each is a claim, a send and a mark, all I/O; every
            alert has its own tx_id, so they are independent).

    Returns:
        ``{"batch_id", "sent", "duplicate", "in_flight", "rejected", "failed", "results"}``
        where ``results`` has one ``{"index", "tx_id", "status", ...}`` per alert, with
        ``message_id`` when sent and ``error`` when rejected or failed.
    """
    counts = {"sent": 0, "duplicate": 0, "in_flight": 0, "rejected": 0, "failed": 0}
    results: list[dict[str, Any]] = []
    try:
        envelope = AlertEvent.model_validate(event)
    except ValidationError as exc:
        counts["rejected"] = 1
        results.append(
            {"index": None, "tx_id": None, "status": "rejected", "error": _first_error(exc)}
        )
        return {"batch_id": None, **counts, "results": results}

    keys = [raw.get("tx_id") if isinstance(raw, Mapping) else None for raw in envelope.alerts]

    def send_one(index: int, raw: Any) -> dict[str, Any]:
        row: dict[str, Any] = {"index": index, "tx_id": keys[index]}
        try:
            alert = Alert.model_validate(raw)
        except ValidationError as exc:
            return {**row, "status": "rejected", "error": _first_error(exc)}
        row["tx_id"] = alert.tx_id
        claim_id = uuid.uuid4().hex
        try:
            held = _claim(
                dynamodb,
                table_name,
                alert.tx_id,
                claim_id,
                envelope.batch_id,
                now(),
                stale_after_s,
                envelope.attempt,
            )
        except (ClientError, BotoCoreError) as exc:
            return {**row, "status": "failed", "error": f"ledger: {_error_text(exc)}"}
        if held is not None:
            return {**row, "status": "duplicate" if held == SENT else "in_flight"}

        mail = render_alert(alert)
        try:
            response = ses.send_email(
                Source=sender,
                Destination={"ToAddresses": [recipient]},
                Message={
                    "Subject": {"Data": mail.subject, "Charset": "UTF-8"},
                    "Body": {
                        "Text": {"Data": mail.text, "Charset": "UTF-8"},
                        "Html": {"Data": mail.html, "Charset": "UTF-8"},
                    },
                },
            )
        except (ClientError, BotoCoreError) as exc:
            row.update(status="failed", error=f"ses: {_error_text(exc)}")
            try:
                _release(dynamodb, table_name, alert.tx_id, claim_id)
            except (ClientError, BotoCoreError) as release_exc:
                # The claim stays; it goes stale after stale_after_s and is then retaken.
                row["error"] += f"; claim not released: {_error_text(release_exc)}"
            return row

        message_id = response["MessageId"]
        row.update(status="sent", message_id=message_id)
        try:
            _mark_sent(dynamodb, table_name, alert.tx_id, claim_id, message_id, now())
        except (ClientError, BotoCoreError) as exc:
            # The mail went out; do not fail (a retry would send it again).
            row["ledger_error"] = _error_text(exc)
        return row

    # A transaction named twice in one event is sent once: the repeat is a duplicate.
    first: dict[str, int] = {}
    for index, key in enumerate(keys):
        if isinstance(key, str) and key:
            first.setdefault(key, index)

    def send_or_skip(index: int, raw: Any) -> dict[str, Any]:
        key = keys[index]
        if isinstance(key, str) and first.get(key, index) != index:
            return {"index": index, "tx_id": key, "status": "duplicate"}
        return send_one(index, raw)

    workers = max(1, min(max_workers, len(envelope.alerts)))
    with ThreadPoolExecutor(max_workers=workers) as pool:  # boto3 clients are thread-safe
        results = list(pool.map(lambda args: send_or_skip(*args), enumerate(envelope.alerts)))
    for row in results:
        counts[row["status"]] += 1

    return {"batch_id": envelope.batch_id, **counts, "results": results}


def raise_for_failures(result: Mapping[str, Any]) -> None:
    """Raise :class:`AlertDeliveryError` when some alert was not delivered and may be retried.

    ``failed`` (SES or the ledger refused) and ``in_flight`` (another run holds a fresh claim)
    count; ``rejected`` alerts do not, since a retry cannot fix them.
    """
    failed, in_flight = result.get("failed", 0), result.get("in_flight", 0)
    if not failed and not in_flight:
        return
    errors = [
        f"{r.get('tx_id')}: {r.get('error', r.get('status'))}"
        for r in result.get("results", [])
        if r.get("status") in ("failed", "in_flight")
    ]
    raise AlertDeliveryError(
        f"batch {result.get('batch_id')}: {failed} alert(s) failed, {in_flight} in flight "
        f"({result.get('sent', 0)} sent): " + "; ".join(errors[:5]),
        result=dict(result),
    )


def handle_alert_event(event: Mapping[str, Any], settings: Settings) -> dict[str, Any]:
    """The alert handler's body: send ``event``'s alerts with clients built from ``settings``.

    Raises:
        AlertDeliveryError: after all alerts were processed, when some failed (so that Lambda
            retries; the ledger keeps the sent ones from going out twice).
    """
    result = send_alerts(
        event,
        ses=client("ses", settings),
        dynamodb=client("dynamodb", settings),
        table_name=settings.aws.dedupe_table,
        sender=settings.aws.ses_sender,
        recipient=settings.aws.alert_recipient,
    )
    raise_for_failures(result)
    return result


# --------------------------------------------------------------------------------------------
# Provisioning and deployment


def ensure_ledger_table(dynamodb: Any, table_name: str) -> bool:
    """Create the ledger table (on-demand, hash key ``tx_id``) unless it exists.

    Returns:
        Whether the table was created now.
    """
    try:
        dynamodb.describe_table(TableName=table_name)
        return False
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
            raise
    try:
        dynamodb.create_table(
            TableName=table_name,
            AttributeDefinitions=[{"AttributeName": "tx_id", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "tx_id", "KeyType": "HASH"}],
            BillingMode="PAY_PER_REQUEST",
        )
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "ResourceInUseException":
            raise
        return False  # created by someone else meanwhile
    dynamodb.get_waiter("table_exists").wait(TableName=table_name)
    return True


def _require_local(settings: Settings, what: str) -> str:
    if settings.mode != "local":
        raise ConfigError(f"{what} is for local mode (moto); settings.mode is {settings.mode!r}")
    if not settings.aws.endpoint_url:
        raise ConfigError(f"{what} needs aws.endpoint_url: start moto with `fraudkit up`")
    return settings.aws.endpoint_url.rstrip("/")


def provision_local(settings: Settings) -> dict[str, Any]:
    """Prepare moto for alerts: verify the sender in SES and create the ledger table.

    Idempotent. Local mode only: in real AWS, verifying an address sends a real e-mail and the
    table belongs to the deployment.

    Returns:
        ``{"sender": ..., "table": ..., "table_created": bool}``.
    """
    _require_local(settings, "provision_local")
    client("ses", settings).verify_email_identity(EmailAddress=settings.aws.ses_sender)
    created = ensure_ledger_table(client("dynamodb", settings), settings.aws.dedupe_table)
    return {
        "sender": settings.aws.ses_sender,
        "table": settings.aws.dedupe_table,
        "table_created": created,
    }


def lambda_environment(settings: Settings) -> dict[str, str]:
    """The environment the handler needs to rebuild these settings: addresses, table, endpoint.

    No secrets: in Lambda the credentials come from the function's role.
    """
    env = {
        "FRAUDKIT_MODE": settings.mode,
        "FRAUDKIT_AWS__SES_SENDER": settings.aws.ses_sender,
        "FRAUDKIT_AWS__ALERT_RECIPIENT": settings.aws.alert_recipient,
        "FRAUDKIT_AWS__DEDUPE_TABLE": settings.aws.dedupe_table,
    }
    if settings.aws.endpoint_url:
        env["AWS_ENDPOINT_URL"] = settings.aws.endpoint_url
    return env


def deployment_shape(settings: Settings, *, role_arn: str | None = None) -> dict[str, Any]:
    """The ``create_function`` parameters of the alert Lambda, without the code.

    Args:
        settings: the settings whose addresses, table and endpoint the function uses.
        role_arn: the execution role; a placeholder in moto's default account when None.
    """
    return {
        "FunctionName": settings.aws.alert_function,
        "Runtime": LAMBDA_RUNTIME,
        "Handler": LAMBDA_HANDLER,
        "Role": role_arn or f"arn:aws:iam::123456789012:role/{LOCAL_ROLE_NAME}",
        "Timeout": LAMBDA_TIMEOUT_S,
        "MemorySize": LAMBDA_MEMORY_MB,
        "Description": "fraudkit: e-mail fraud alerts once per transaction (SES + DynamoDB)",
        "Environment": {"Variables": lambda_environment(settings)},
        "Publish": False,
    }


_LAMBDA_TRUST = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"Service": "lambda.amazonaws.com"},
            "Action": "sts:AssumeRole",
        }
    ],
}


def _local_role(settings: Settings) -> str:
    iam = client("iam", settings)
    try:
        return iam.get_role(RoleName=LOCAL_ROLE_NAME)["Role"]["Arn"]
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "NoSuchEntity":
            raise
    role = iam.create_role(
        RoleName=LOCAL_ROLE_NAME, AssumeRolePolicyDocument=json.dumps(_LAMBDA_TRUST)
    )
    return role["Role"]["Arn"]


def deploy_lambda(
    settings: Settings, zip_bytes: bytes, *, role_arn: str | None = None
) -> dict[str, Any]:
    """Create the alert Lambda, or update its code and configuration when it exists.

    Args:
        settings: checked with :meth:`Settings.check_deployable` first.
        zip_bytes: the deployment package (``services/`` and ``fraudkit/`` with dependencies).
        role_arn: the execution role; in local mode a role is created in moto when None.

    Returns:
        The function's configuration as Lambda reports it.
    """
    settings.check_deployable()
    if role_arn is None:
        if settings.mode != "local":
            raise ConfigError("deploy_lambda in aws mode needs role_arn (the execution role)")
        role_arn = _local_role(settings)
    shape = deployment_shape(settings, role_arn=role_arn)
    lam = client("lambda", settings)
    try:
        return lam.create_function(**shape, Code={"ZipFile": zip_bytes})
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "ResourceConflictException":
            raise
    name = shape["FunctionName"]
    lam.update_function_code(FunctionName=name, ZipFile=zip_bytes)
    config = {k: v for k, v in shape.items() if k not in ("FunctionName", "Publish")}
    return lam.update_function_configuration(FunctionName=name, **config)


# --------------------------------------------------------------------------------------------
# Invoking the handler


_ENV_LOCK = threading.Lock()


@contextmanager
def _environment(values: Mapping[str, str | None]) -> Iterator[None]:
    """Set (or, for None, remove) environment variables for the duration of the block."""
    with _ENV_LOCK:
        saved = {name: os.environ.get(name) for name in values}
        try:
            for name, value in values.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
            yield
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


@dataclass
class LocalContext:
    """The parts of Lambda's context object that a handler may read, for in-process calls."""

    function_name: str
    aws_request_id: str
    memory_limit_in_mb: int = LAMBDA_MEMORY_MB
    deadline: float = 0.0

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left before the (simulated) Lambda timeout."""
        return max(0, int((self.deadline - time.monotonic()) * 1000))


def load_handler(spec: str = LOCAL_HANDLER) -> Callable[[dict[str, Any], Any], Any]:
    """Import ``module:function`` and return the function."""
    module_name, _, attr = spec.partition(":")
    return getattr(importlib.import_module(module_name), attr)


def invoke_alert_handler(event: Mapping[str, Any], settings: Settings) -> dict[str, Any]:
    """Run the alert handler on ``event`` as configured by ``settings.aws.alert_invoke``.

    ``local``: import :data:`LOCAL_HANDLER` and call it in-process with the event after a JSON
    round trip (exactly what Lambda would receive) and with the function's environment
    (:func:`lambda_environment`, endpoint and region included) set for the call.
    ``lambda``: ``lambda.invoke`` the deployed function and decode its answer.

    Returns:
        The handler's result (see :func:`send_alerts`).

    Raises:
        AlertDeliveryError: the handler raised (locally: the very exception) or Lambda
            reported a ``FunctionError``.
    """
    payload = json.dumps(event, allow_nan=False)
    if settings.aws.alert_invoke == "local":
        handler = load_handler(LOCAL_HANDLER)
        env: dict[str, str | None] = {
            **lambda_environment(settings),
            "AWS_REGION": settings.aws.region,
            "AWS_ENDPOINT_URL": settings.aws.endpoint_url,  # None removes an inherited one
        }
        context = LocalContext(
            function_name=settings.aws.alert_function,
            aws_request_id=str(uuid.uuid4()),
            deadline=time.monotonic() + LAMBDA_TIMEOUT_S,
        )
        with _environment(env):
            return handler(json.loads(payload), context)

    response = client("lambda", settings).invoke(
        FunctionName=settings.aws.alert_function,
        InvocationType="RequestResponse",
        Payload=payload.encode(),
    )
    body = response["Payload"].read().decode(errors="replace")
    try:
        answer = json.loads(body) if body else None
    except json.JSONDecodeError:
        answer = None
    if response.get("FunctionError") or not isinstance(answer, dict):
        message = answer.get("errorMessage", body) if isinstance(answer, dict) else body
        kind = response.get("FunctionError") or "not a JSON object"
        raise AlertDeliveryError(
            f"Lambda {settings.aws.alert_function} failed ({kind}): {message[:500]}"
        )
    return answer


# --------------------------------------------------------------------------------------------
# What moto sent


def sent_messages(settings: Settings) -> list[dict[str, Any]]:
    """The e-mails moto's SES has accepted so far, read from ``GET /moto-api/data.json``.

    Local mode only. Each item is moto's record of a ``send_email``: ``id`` (the MessageId),
    ``source``, ``destinations`` (``{"ToAddresses": [...], ...}``), ``subject`` and ``body``
    (moto keeps the HTML body when there is one, else the text body). The format is moto's
    internal API and may change between moto versions.

    Raises:
        RuntimeError: moto could not list its data. Seen with moto 5.2 without Docker once a
            Lambda function was ever created on the server (its ``docker_client`` raises while
            data.json is built); only ``POST /moto-api/reset`` or a restart clears that.
    """
    endpoint = _require_local(settings, "sent_messages")
    response = httpx.get(f"{endpoint}/moto-api/data.json", timeout=10.0)
    if response.status_code != 200:
        raise RuntimeError(
            f"moto's {endpoint}/moto-api/data.json answered {response.status_code}; if a Lambda "
            "function was created on this server without Docker, moto cannot list its data "
            "until it is reset or restarted"
        )
    return list(response.json().get("ses", {}).get("Message", []))
