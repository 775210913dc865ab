"""The explanation service: ``POST /explain`` turns flagged transactions into explanations.

Built by a factory, so importing this module does nothing; uvicorn calls it:
``uvicorn --factory services.llm_service.app:create_app --host 127.0.0.1 --port 18000``.
The provider (template, OpenAI-compatible or Bedrock) comes from ``settings.llm.provider``;
whatever it is, every item gets an explanation, with ``fallback`` and ``error`` set when the
LLM could not give one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request

from fraudkit.config import Settings, load_settings
from fraudkit.llm import ExplainRequest, ExplainResponse, Provider, make_provider


def create_app(settings: Settings | None = None, provider: Provider | None = None) -> FastAPI:
    """Build the explanation service.

    Args:
        settings: the settings; loaded with :func:`fraudkit.config.load_settings` when None.
        provider: the provider to serve; built from the settings when None.

    Returns:
        The FastAPI application, with ``GET /health`` and ``POST /explain``.

    """
    settings = settings if settings is not None else load_settings()
    served = provider if provider is not None else make_provider(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        served.close()

    app = FastAPI(
        title="fraudkit explanation service",
        summary="Explains why flagged card transactions were flagged.",
        version="1",
        lifespan=lifespan,
    )
    app.state.provider = served

    @app.get("/health")
    def health(request: Request) -> dict[str, str]:
        """Say that the service is up and which provider it serves."""
        return {"status": "ok", "provider": request.app.state.provider.name}

    @app.post("/explain")
    def explain(body: ExplainRequest, request: Request) -> ExplainResponse:
        """Explain a batch of flagged transactions: one explanation per item, in order."""
        return ExplainResponse(explanations=request.app.state.provider.explain(body.items))

    return app
