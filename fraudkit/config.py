"""One typed settings object, loaded from config.yaml with environment overrides.

Order of precedence, lowest first: the defaults below, ``config.yaml``, the endpoints that
``fraudkit up`` recorded in the run folder's state file, then the environment
(``FRAUDKIT_<SECTION>__<KEY>`` and the usual names such as ``KAFKA_BOOTSTRAP_SERVERS``).
Only this module reads the environment; everything else receives a :class:`Settings`.
Importing it has no side effects.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

CONFIG_FILE = "config.yaml"
STATE_FILE = "services.json"

# Environment names that people already use for these endpoints.
ENV_ALIASES: dict[str, tuple[str, str]] = {
    "KAFKA_BOOTSTRAP_SERVERS": ("kafka", "bootstrap_servers"),
    "AWS_ENDPOINT_URL": ("aws", "endpoint_url"),
    "AWS_REGION": ("aws", "region"),
    "FRAUDKIT_LLM_URL": ("llm", "url"),
    "OPENAI_BASE_URL": ("llm", "openai_base_url"),
}


class ConfigError(ValueError):
    """The configuration is invalid; the message names the key and the problem."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataSettings(_Section):
    """Where the transactions come from."""

    source: str = "sample"
    full_path: Path = Path("data/creditcard.csv")


class KafkaSettings(_Section):
    """The broker and the topics."""

    bootstrap_servers: str | None = None
    topic: str = "creditcard_topic"
    labels_topic: str = "creditcard_labels"
    dlq_topic: str = "creditcard_dlq"
    partitions: int = Field(4, ge=1, le=256)
    spark_format: Literal["fraudkit_kafka", "kafka"] = "fraudkit_kafka"
    max_offsets_per_trigger: int = Field(20000, ge=1)


class ServiceSettings(_Section):
    """The embedded services started by ``fraudkit up``."""

    host: str = "127.0.0.1"
    kafka_port: int = Field(19092, ge=1, le=65535)
    moto_port: int = Field(15000, ge=1, le=65535)
    llm_port: int = Field(18000, ge=1, le=65535)
    start_timeout_s: float = Field(60, gt=0)


class AwsSettings(_Section):
    """SES, DynamoDB and Lambda: moto locally, real AWS by configuration."""

    endpoint_url: str | None = None
    region: str = "us-east-1"
    ses_sender: str = "fraud-alerts@fraudkit.example"
    alert_recipient: str = "fraud-analyst@fraudkit.example"
    dedupe_table: str = "fraudkit_alert_ledger"
    alert_function: str = "fraudkit-send-alert"
    alert_invoke: Literal["local", "lambda"] = "local"


class LlmSettings(_Section):
    """The explanation service and its provider."""

    url: str | None = None
    provider: Literal["template", "openai", "bedrock"] = "template"
    openai_base_url: str | None = None
    openai_model: str = "gpt-4o-mini"
    bedrock_model_id: str = "anthropic.claude-3-haiku-20240307-v1:0"
    timeout_s: float = Field(20, gt=0)
    top_k: int = Field(5, ge=1, le=30)


class ModelSettings(_Section):
    """The model artifact and how its threshold is chosen."""

    dir: Path = Path("model")
    threshold_strategy: Literal["cost", "budget"] = "cost"
    review_cost: float = Field(5.0, ge=0)
    alerts_per_day: float = Field(100, gt=0)
    seed: int = 7


class StreamSettings(_Section):
    """The scoring stream: checkpoint, lake folders, trigger."""

    checkpoint_dir: Path = Path("checkpoints/scoring")
    output_dir: Path = Path("lake/scored")
    dlq_dir: Path = Path("lake/dlq")
    alerts_dir: Path = Path("lake/alerts")
    trigger_seconds: float = Field(1, gt=0)
    threshold: float | None = Field(None, ge=0, le=1)
    shuffle_partitions: int = Field(2, ge=1)


class Settings(_Section):
    """All of fraudkit's settings.

    Relative paths: ``run_dir`` and ``data.full_path`` are relative to :attr:`root` (the folder
    of config.yaml); the model and stream folders are relative to ``run_dir``, so one
    ``FRAUDKIT_RUN_DIR`` moves every output of a run.
    """

    mode: Literal["local", "aws"] = "local"
    root: Path = Field(default_factory=Path.cwd)
    run_dir: Path = Path("runs")
    data: DataSettings = DataSettings()
    kafka: KafkaSettings = KafkaSettings()
    services: ServiceSettings = ServiceSettings()
    aws: AwsSettings = AwsSettings()
    llm: LlmSettings = LlmSettings()
    model: ModelSettings = ModelSettings()
    stream: StreamSettings = StreamSettings()
    secrets: dict[str, str] = Field(default_factory=dict, repr=False, exclude=True)

    @model_validator(mode="after")
    def _absolute_paths(self) -> Settings:
        """Resolve relative paths: run_dir and data against root, the rest against run_dir."""
        root = self.root.resolve()
        self.root = root

        def under(base: Path, p: Path) -> Path:
            return p if p.is_absolute() else base / p

        self.run_dir = under(root, self.run_dir)
        self.data.full_path = under(root, self.data.full_path)
        self.model.dir = under(self.run_dir, self.model.dir)
        for name in ("checkpoint_dir", "output_dir", "dlq_dir", "alerts_dir"):
            setattr(self.stream, name, under(self.run_dir, getattr(self.stream, name)))
        return self

    @property
    def state_file(self) -> Path:
        """Where ``fraudkit up`` records the pids and ports of the services it started."""
        return self.run_dir / STATE_FILE

    def secret(self, name: str) -> str | None:
        """A secret taken from the environment at load time (never from config.yaml)."""
        return self.secrets.get(name)

    def check_deployable(self) -> None:
        """Refuse placeholders outside local mode: real mail addresses, endpoints, keys."""
        if self.mode == "local":
            return
        problems = []
        for key in ("ses_sender", "alert_recipient"):
            if getattr(self.aws, key).endswith(".example"):
                problems.append(f"aws.{key} is a placeholder address")
        if self.llm.provider == "openai" and not self.secret("OPENAI_API_KEY"):
            problems.append("llm.provider is openai but OPENAI_API_KEY is not set")
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            if self.secret(name) in ("testing", "test", "placeholder"):
                problems.append(f"{name} is a placeholder value")
        if problems:
            raise ConfigError("mode is 'aws' but: " + "; ".join(problems))


def find_config(start: Path | None = None) -> Path | None:
    """The nearest config.yaml in ``start`` or its parents (notebooks run one level down)."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / CONFIG_FILE
        if candidate.is_file():
            return candidate
    return None


def _coerce(text: str) -> Any:
    """Turn an environment string into a YAML scalar: numbers, booleans, null."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _env_overrides(env: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name, value in env.items():
        if name.startswith("FRAUDKIT_") and "__" in name:
            section, _, key = name[len("FRAUDKIT_") :].lower().partition("__")
            out.setdefault(section, {})[key] = _coerce(value)
    for name, (section, key) in ENV_ALIASES.items():
        if env.get(name):
            out.setdefault(section, {})[key] = env[name]
    for key in ("mode", "run_dir"):
        if env.get(f"FRAUDKIT_{key.upper()}"):
            out[key] = _coerce(env[f"FRAUDKIT_{key.upper()}"])  # type: ignore[assignment]
    return out


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(dict(merged[key]), value)
        else:
            merged[key] = value
    return merged


def read_state(run_dir: Path) -> dict[str, Any]:
    """The services' state file, or an empty dict when nothing was started."""
    path = run_dir / STATE_FILE
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def with_service_endpoints(settings: Settings) -> Settings:
    """A copy of ``settings`` whose unset endpoints point at what ``fraudkit up`` started."""
    state = read_state(settings.run_dir)
    kafka, aws, llm = settings.kafka, settings.aws, settings.llm
    if not kafka.bootstrap_servers and "kafka" in state:
        kafka = kafka.model_copy(update={"bootstrap_servers": state["kafka"]["url"]})
    if not aws.endpoint_url and "moto" in state:
        aws = aws.model_copy(update={"endpoint_url": state["moto"]["url"]})
    if not llm.url and "llm" in state:
        llm = llm.model_copy(update={"url": state["llm"]["url"]})
    return settings.model_copy(update={"kafka": kafka, "aws": aws, "llm": llm})


SECRET_NAMES = ("OPENAI_API_KEY", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")


def load_settings(
    path: str | Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    use_state: bool = True,
) -> Settings:
    """Load the settings.

    Args:
        path: a config.yaml; default ``$FRAUDKIT_CONFIG`` or the nearest config.yaml upwards.
        env: the environment to read (default ``os.environ``).
        overrides: nested values applied last, e.g. ``{"kafka": {"partitions": 2}}``.
        use_state: fill unset endpoints from the services' state file.
    """
    env = os.environ if env is None else env
    if path is None and env.get("FRAUDKIT_CONFIG"):
        path = env["FRAUDKIT_CONFIG"]
    config_path = Path(path) if path is not None else find_config()
    raw: dict[str, Any] = {}
    root = Path.cwd()
    if config_path is not None:
        if not config_path.is_file():
            raise ConfigError(f"config file not found: {config_path}")
        try:
            raw = yaml.safe_load(config_path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{config_path} is not valid YAML: {exc}") from exc
        if not isinstance(raw, dict):
            raise ConfigError(f"{config_path} must hold a mapping of sections")
        root = config_path.resolve().parent
    raw.setdefault("root", str(root))
    from_env = _env_overrides(env)
    merged = _merge(raw, from_env)
    if overrides:
        merged = _merge(merged, overrides)
    merged["secrets"] = {name: env[name] for name in SECRET_NAMES if env.get(name)}
    try:
        settings = Settings.model_validate(merged)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"invalid settings: {problems}") from exc
    return with_service_endpoints(settings) if use_state else settings
