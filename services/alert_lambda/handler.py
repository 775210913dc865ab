"""The alert Lambda's entry point: ``services.alert_lambda.handler.lambda_handler``.

Everything happens in :func:`fraudkit.alerts.handle_alert_event`; this file only builds the
settings from the function's environment (``FRAUDKIT_AWS__SES_SENDER``,
``FRAUDKIT_AWS__ALERT_RECIPIENT``, ``FRAUDKIT_AWS__DEDUPE_TABLE``, ``AWS_ENDPOINT_URL``, ...)
and passes the event on. Importing it does nothing besides imports.
"""

from __future__ import annotations

from typing import Any

from fraudkit.alerts import handle_alert_event
from fraudkit.config import load_settings


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Send the event's alerts once each; raise when some could not be sent.

    Args:
        event: ``{"alerts": [...], "batch_id": int | None}`` from the stream.
        context: the Lambda context (unused).

    Returns:
        The per-alert result of :func:`fraudkit.alerts.send_alerts`.

    Raises:
        fraudkit.alerts.AlertDeliveryError: after the other alerts were processed, when some
            failed; Lambda retries the event and the ledger keeps sent alerts from repeating.
    """
    return handle_alert_event(event, load_settings())
