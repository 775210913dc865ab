"""The alert path against a real moto server: rendering, send-once, failures, deploy shape."""

from __future__ import annotations

import io
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from fraudkit.alerts import (
    LAMBDA_HANDLER,
    AlertDeliveryError,
    deploy_lambda,
    deployment_shape,
    invoke_alert_handler,
    provision_local,
    render_alert,
    send_alerts,
    sent_messages,
)
from fraudkit.aws import client
from fraudkit.config import Settings
from tests.conftest import running

ROOT = Path(__file__).resolve().parents[1]


def make_alert(tx_id: str = "tx-000042", **changes: Any) -> dict[str, Any]:
    alert = {
        "tx_id": tx_id,
        "score": 0.973,
        "threshold": 0.42,
        "amount": 149.62,
        "time": 40312.0,
        "reason": "V14 is far below normal, which raises the risk most.",
        "actions": ["Call the card holder", "Hold the card"],
        "confidence": 0.9,
        "provider": "template",
        "top_features": [
            {"feature": "V4", "value": 3.1, "contribution": 0.8, "direction": "raises risk"},
            {"feature": "V14", "value": -9.2, "contribution": 2.4, "direction": "raises risk"},
            {"feature": "V12", "value": 0.5, "contribution": -0.3, "direction": "lowers risk"},
        ],
    }
    alert.update(changes)
    return alert


def with_sender(settings: Settings, sender: str) -> Settings:
    aws = settings.aws.model_copy(update={"ses_sender": sender})
    return settings.model_copy(update={"aws": aws})


def ledger_item(settings: Settings, tx_id: str) -> dict[str, Any] | None:
    found = client("dynamodb", settings).get_item(
        TableName=settings.aws.dedupe_table, Key={"tx_id": {"S": tx_id}}, ConsistentRead=True
    )
    return found.get("Item")


def mails_about(settings: Settings, tx_id: str) -> list[dict[str, Any]]:
    return [m for m in sent_messages(settings) if tx_id in m["subject"]]


# --------------------------------------------------------------------------------------------
# Rendering (no servers)


@pytest.mark.unit
def test_render_names_transaction_score_and_features() -> None:
    mail = render_alert(make_alert())
    assert "tx-000042" in mail.subject and "0.973" in mail.subject
    for text in (mail.text, mail.html):
        assert "0.9730" in text and "0.4200" in text  # score against threshold
        assert "149.62" in text
        assert "Call the card holder" in text
        assert "+2.4000" in text and "-0.3000" in text
    # the largest contribution comes first in the table
    assert mail.text.index("V14") < mail.text.index("V4 ") < mail.text.index("V12")


@pytest.mark.unit
def test_render_escapes_html_and_keeps_subject_one_line() -> None:
    mail = render_alert(
        make_alert(
            "tx<script>\nBcc: x",
            reason='<img src=x onerror="alert(1)"> & more',
            actions=["<b>freeze</b>"],
            top_features=[
                {"feature": "<V1>", "value": 1, "contribution": 1, "direction": "raises risk"}
            ],
        )
    )
    assert "<script>" not in mail.html and "&lt;script&gt;" in mail.html
    assert "<img" not in mail.html and "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in mail.html
    assert "&amp; more" in mail.html
    assert "<b>freeze</b>" not in mail.html and "&lt;b&gt;freeze&lt;/b&gt;" in mail.html
    assert "<V1>" not in mail.html and "&lt;V1&gt;" in mail.html
    assert "\n" not in mail.subject and "\r" not in mail.subject


# --------------------------------------------------------------------------------------------
# Against moto


@pytest.fixture(scope="module")
def moto_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """A moto server of this module's own, started by ``fraudkit.services.up``."""
    with running(tmp_path_factory.mktemp("aws") / "runs", "moto") as settings:
        yield settings


@pytest.fixture
def aws(moto_settings: Settings) -> Settings:
    """Moto emptied (no mail, no tables, no identities), then provisioned for alerts."""
    httpx.post(f"{moto_settings.aws.endpoint_url}/moto-api/reset", timeout=10).raise_for_status()
    provision_local(moto_settings)
    return moto_settings


@pytest.mark.aws
def test_provision_is_idempotent(aws: Settings) -> None:
    again = provision_local(aws)
    assert again["table_created"] is False
    ses = client("ses", aws)
    assert aws.aws.ses_sender in ses.list_identities(IdentityType="EmailAddress")["Identities"]


@pytest.mark.aws
def test_alert_is_sent_through_ses_and_recorded(aws: Settings) -> None:
    assert sent_messages(aws) == []
    result = invoke_alert_handler({"alerts": [make_alert()], "batch_id": 3}, aws)

    mails = sent_messages(aws)
    assert len(mails) == 1
    mail = mails[0]
    assert "tx-000042" in mail["subject"]
    assert "tx-000042" in mail["body"] and "V14" in mail["body"]
    assert mail["source"] == aws.aws.ses_sender
    assert mail["destinations"]["ToAddresses"] == [aws.aws.alert_recipient]
    assert result["sent"] == 1 and result["batch_id"] == 3
    assert result["results"][0]["message_id"] == mail["id"]
    item = ledger_item(aws, "tx-000042")
    assert item is not None
    assert item["status"]["S"] == "sent" and item["message_id"]["S"] == mail["id"]


@pytest.mark.aws
def test_same_event_twice_sends_one_mail(aws: Settings) -> None:
    event = {"alerts": [make_alert("tx-7"), make_alert("tx-8")], "batch_id": 5}
    first = invoke_alert_handler(event, aws)
    second = invoke_alert_handler(event, aws)  # a replay of the batch
    assert (first["sent"], first["duplicate"]) == (2, 0)
    assert (second["sent"], second["duplicate"]) == (0, 2)
    assert len(mails_about(aws, "tx-7")) == 1 and len(mails_about(aws, "tx-8")) == 1
    assert len(sent_messages(aws)) == 2


@pytest.mark.aws
def test_ses_rejection_raises_releases_claim_and_retry_sends_once(aws: Settings) -> None:
    late = with_sender(aws, "late-sender@fraudkit.example")  # never verified
    event = {"alerts": [make_alert("tx-rejected")], "batch_id": 9}

    with pytest.raises(AlertDeliveryError, match="MessageRejected") as caught:
        invoke_alert_handler(event, late)
    assert caught.value.result is not None and caught.value.result["failed"] == 1
    assert ledger_item(late, "tx-rejected") is None  # the claim was deleted
    assert sent_messages(late) == []

    client("ses", late).verify_email_identity(EmailAddress=late.aws.ses_sender)
    assert invoke_alert_handler(event, late)["sent"] == 1
    assert invoke_alert_handler(event, late)["duplicate"] == 1  # Lambda's next retry
    assert len(mails_about(late, "tx-rejected")) == 1
    assert len(sent_messages(late)) == 1


@pytest.mark.aws
def test_malformed_alert_is_rejected_and_the_valid_one_sent(aws: Settings) -> None:
    bad = make_alert("tx-bad", score="very high")
    no_id = {k: v for k, v in make_alert().items() if k != "tx_id"}
    event = {"alerts": [bad, make_alert("tx-good"), no_id, "not an alert"], "batch_id": 1}

    result = invoke_alert_handler(event, aws)  # does not raise: a retry cannot fix these

    statuses = [r["status"] for r in result["results"]]
    assert statuses == ["rejected", "sent", "rejected", "rejected"]
    assert result["rejected"] == 3 and result["sent"] == 1
    assert "score" in result["results"][0]["error"]
    assert result["results"][0]["tx_id"] == "tx-bad"
    assert "tx_id" in result["results"][2]["error"]
    assert [m["subject"] for m in sent_messages(aws)] == [
        render_alert(make_alert("tx-good")).subject
    ]
    assert ledger_item(aws, "tx-bad") is None


@pytest.mark.aws
def test_malformed_event_is_rejected_without_sending(aws: Settings) -> None:
    result = invoke_alert_handler({"batch_id": 2}, aws)
    assert result["rejected"] == 1 and "alerts" in result["results"][0]["error"]
    assert sent_messages(aws) == []


def leave_claim(
    settings: Settings,
    tx_id: str,
    claimed_at: float,
    *,
    claim_id: str = "a-run-that-died",
    attempt: str | None = None,
) -> None:
    """A ``sending`` claim in the ledger, as a run that died before sending leaves it."""
    item = {
        "tx_id": {"S": tx_id},
        "status": {"S": "sending"},
        "claim_id": {"S": claim_id},
        "claimed_at": {"N": str(claimed_at)},
    }
    if attempt:
        item["attempt"] = {"S": attempt}
    client("dynamodb", settings).put_item(TableName=settings.aws.dedupe_table, Item=item)


@pytest.mark.aws
def test_stale_claim_is_retaken_and_a_fresh_one_is_left_alone(aws: Settings) -> None:
    dynamodb = client("dynamodb", aws)
    table = aws.aws.dedupe_table
    now = time.time()
    leave_claim(aws, "tx-crashed", now - 3600, claim_id="another-run")
    leave_claim(aws, "tx-busy", now - 5, claim_id="another-run")
    result = send_alerts(
        {"alerts": [make_alert("tx-crashed"), make_alert("tx-busy")], "batch_id": 4},
        ses=client("ses", aws),
        dynamodb=dynamodb,
        table_name=table,
        sender=aws.aws.ses_sender,
        recipient=aws.aws.alert_recipient,
        stale_after_s=300,
    )
    assert [r["status"] for r in result["results"]] == ["sent", "in_flight"]
    assert len(mails_about(aws, "tx-crashed")) == 1 and mails_about(aws, "tx-busy") == []
    assert ledger_item(aws, "tx-busy")["claim_id"]["S"] == "another-run"

    with pytest.raises(AlertDeliveryError, match="in flight"):  # the handler asks for a retry
        invoke_alert_handler({"alerts": [make_alert("tx-busy")], "batch_id": 4}, aws)


@pytest.mark.aws
def test_a_claim_left_by_the_same_attempt_is_taken_over_at_once(aws: Settings) -> None:
    dynamodb = client("dynamodb", aws)
    table = aws.aws.dedupe_table
    leave_claim(aws, "tx-replayed", time.time() - 5, attempt="stream-a#7")
    leave_claim(aws, "tx-other", time.time() - 5, attempt="stream-b#7")
    event = {
        "alerts": [make_alert("tx-replayed"), make_alert("tx-other")],
        "batch_id": 7,
        "attempt": "stream-a#7",
    }
    kwargs = {
        "ses": client("ses", aws),
        "dynamodb": dynamodb,
        "table_name": table,
        "sender": aws.aws.ses_sender,
        "recipient": aws.aws.alert_recipient,
    }
    result = send_alerts(event, **kwargs)
    assert [r["status"] for r in result["results"]] == ["sent", "in_flight"]
    assert len(mails_about(aws, "tx-replayed")) == 1 and mails_about(aws, "tx-other") == []
    again = send_alerts(event, **kwargs)  # the same batch once more: sent stays sent
    assert [r["status"] for r in again["results"]] == ["duplicate", "in_flight"]
    assert len(mails_about(aws, "tx-replayed")) == 1


@pytest.mark.aws
def test_many_alerts_at_once_each_go_out_once(aws: Settings) -> None:
    alerts = [make_alert(f"tx-many-{i:03d}") for i in range(40)]
    alerts.append(make_alert("tx-many-007"))  # named twice in one event
    result = send_alerts(
        {"alerts": alerts, "batch_id": 9},
        ses=client("ses", aws),
        dynamodb=client("dynamodb", aws),
        table_name=aws.aws.dedupe_table,
        sender=aws.aws.ses_sender,
        recipient=aws.aws.alert_recipient,
    )
    assert (result["sent"], result["duplicate"], result["failed"]) == (40, 1, 0)
    assert [r["index"] for r in result["results"]] == list(range(41))
    assert result["results"][-1]["status"] == "duplicate"
    assert len(mails_about(aws, "tx-many-007")) == 1
    assert all(len(mails_about(aws, f"tx-many-{i:03d}")) == 1 for i in range(40))


@pytest.mark.aws
def test_lambda_deploy_shape(aws: Settings) -> None:
    package = io.BytesIO()
    with zipfile.ZipFile(package, "w") as zf:
        for path in (
            "services/__init__.py",
            "services/alert_lambda/__init__.py",
            "services/alert_lambda/handler.py",
        ):
            zf.write(ROOT / path, path)

    deploy_lambda(aws, package.getvalue())
    deploy_lambda(aws, package.getvalue())  # a second deploy updates, it does not fail

    config = client("lambda", aws).get_function(FunctionName=aws.aws.alert_function)[
        "Configuration"
    ]
    assert config["Runtime"] == "python3.11"
    assert config["Handler"] == LAMBDA_HANDLER == "services.alert_lambda.handler.lambda_handler"
    assert config["Timeout"] == deployment_shape(aws)["Timeout"]
    variables = config["Environment"]["Variables"]
    assert variables["FRAUDKIT_AWS__SES_SENDER"] == aws.aws.ses_sender
    assert variables["FRAUDKIT_AWS__ALERT_RECIPIENT"] == aws.aws.alert_recipient
    assert variables["FRAUDKIT_AWS__DEDUPE_TABLE"] == aws.aws.dedupe_table
    assert not any("KEY" in name or "SECRET" in name for name in variables)


@pytest.mark.aws
def test_lambda_invoke_surfaces_function_error(aws: Settings) -> None:
    package = io.BytesIO()
    with zipfile.ZipFile(package, "w") as zf:
        zf.write(ROOT / "services/alert_lambda/handler.py", "services/alert_lambda/handler.py")
    deploy_lambda(aws, package.getvalue())
    remote = aws.model_copy(update={"aws": aws.aws.model_copy(update={"alert_invoke": "lambda"})})
    # moto answers every invoke with a FunctionError here (it needs Docker to run the code)
    with pytest.raises(AlertDeliveryError, match=r"failed \(Handled\)"):
        invoke_alert_handler({"alerts": [make_alert()], "batch_id": 1}, remote)
    assert ledger_item(aws, "tx-000042") is None  # nothing ran, nothing was claimed
    # moto 5.2 without Docker cannot build data.json once a function exists: said clearly
    with pytest.raises(RuntimeError, match="reset or restarted"):
        sent_messages(aws)
