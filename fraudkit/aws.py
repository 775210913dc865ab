"""boto3 clients built from the settings: moto on loopback locally, real AWS by configuration."""

from __future__ import annotations

from typing import Any

import boto3

from fraudkit.config import Settings

LOCAL_CREDENTIAL = "testing"  # moto accepts any key; this one is refused in aws mode


def client(service: str, settings: Settings) -> Any:
    """A boto3 client for ``service`` at the configured endpoint.

    In local mode the credentials are moto's placeholders unless real ones are set; in aws
    mode boto3's usual credential chain applies and ``endpoint_url`` is normally unset.
    """
    kwargs: dict[str, Any] = {"region_name": settings.aws.region}
    if settings.aws.endpoint_url:
        kwargs["endpoint_url"] = settings.aws.endpoint_url
    if settings.mode == "local":
        kwargs["aws_access_key_id"] = settings.secret("AWS_ACCESS_KEY_ID") or LOCAL_CREDENTIAL
        kwargs["aws_secret_access_key"] = (
            settings.secret("AWS_SECRET_ACCESS_KEY") or LOCAL_CREDENTIAL
        )
    return boto3.client(service, **kwargs)
