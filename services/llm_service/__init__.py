"""The explanation service: FastAPI over a :mod:`fraudkit.llm` provider.

Run it with ``uvicorn --factory services.llm_service.app:create_app``.
"""
