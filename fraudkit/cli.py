"""The ``fraudkit`` command line: the same steps as the notebooks, one command each.

Start here: ``fraudkit demo`` runs everything end to end on the embedded services.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from fraudkit.config import ConfigError, Settings, load_settings

app = typer.Typer(
    help=(
        "fraudkit: real-time credit-card fraud detection with Kafka, Spark, XGBoost, SHAP, an "
        "LLM and SES alerts, on a laptop. `fraudkit demo` runs the whole pipeline; `fraudkit up` "
        "starts the embedded broker, AWS (moto) and LLM service; `fraudkit down` stops them."
    ),
    no_args_is_help=True,
    add_completion=False,
)
data_app = typer.Typer(help="The ULB credit-card data set: the committed sample and the full file.")
app.add_typer(data_app, name="data")

ConfigOption = Annotated[
    Path | None, typer.Option("--config", "-c", help="config.yaml to use (default: nearest).")
]


def _settings(config: Path | None, *, use_state: bool = True) -> Settings:
    try:
        return load_settings(config, use_state=use_state)
    except ConfigError as exc:
        typer.secho(f"config error: {exc}", fg="red", err=True)
        raise typer.Exit(2) from exc


def _fail(message: str) -> None:
    typer.secho(message, fg="red", err=True)
    raise typer.Exit(1)


@app.command()
def up(config: ConfigOption = None) -> None:
    """Start the embedded services (broker, moto, LLM service) on loopback; idempotent."""
    from fraudkit.services import ServiceError
    from fraudkit.services import up as start

    settings = _settings(config, use_state=False)
    try:
        start(settings, say=typer.echo)
    except ServiceError as exc:
        _fail(str(exc))
    if settings.mode == "local":
        from fraudkit.alerts import provision_local
        from fraudkit.config import with_service_endpoints

        provision_local(with_service_endpoints(settings))
        typer.echo("aws: SES sender verified and the alert ledger table exists (moto)")


@app.command()
def down(config: ConfigOption = None) -> None:
    """Stop the services that `fraudkit up` started (by their recorded pids)."""
    from fraudkit.services import down as stop

    stop(_settings(config, use_state=False), say=typer.echo)


@app.command()
def status(config: ConfigOption = None) -> None:
    """Show each service's health, endpoint, pid and log file."""
    from fraudkit.services import status as service_status

    for row in service_status(_settings(config, use_state=False)):
        health = (
            typer.style("healthy", fg="green") if row["healthy"] else typer.style("down", fg="red")
        )
        typer.echo(
            f"{row['name']:<6} {health:<16} {row['origin']:<9} {row['url'] or '-':<28} "
            f"pid {row['pid'] or '-':<8} log {row['log'] or '-'}"
        )


@app.command()
def produce(
    config: ConfigOption = None,
    source: Annotated[str, typer.Option(help="sample, full, or a CSV path.")] = "sample",
    limit: Annotated[int | None, typer.Option(help="Send only the first N rows.")] = None,
    rate: Annotated[float | None, typer.Option(help="Messages per second (default: max).")] = None,
) -> None:
    """Replay transactions into the topic (without the label; labels go to their own topic)."""
    from tqdm import tqdm

    from fraudkit.data import load_transactions
    from fraudkit.kafka_io import KafkaUnavailableError, produce_transactions

    settings = _settings(config)
    frame = load_transactions(source, settings=settings, limit=limit)
    bar = tqdm(total=len(frame), unit="msg", desc=settings.kafka.topic)

    def progress(sent: int) -> None:
        bar.update(sent - bar.n)

    try:
        report = produce_transactions(frame, settings, rate=rate, progress=progress)
    except KafkaUnavailableError as exc:
        _fail(str(exc))
    finally:
        bar.close()
    typer.echo(
        f"sent {report.transactions} transactions and {report.labels} labels in "
        f"{report.seconds:.1f}s ({report.rate:.0f}/s)"
    )


@app.command()
def stream(
    config: ConfigOption = None,
    available_now: Annotated[
        bool, typer.Option(help="Drain what is in the topic, then stop (else run on).")
    ] = True,
    timeout: Annotated[float | None, typer.Option(help="Stop after this many seconds.")] = None,
    starting_offsets: Annotated[str, typer.Option(help="earliest, latest or JSON.")] = "earliest",
) -> None:
    """Score the topic with Spark Structured Streaming: lake, DLQ, explanations, alerts."""
    from fraudkit.stream import run_stream

    settings = _settings(config)
    report = run_stream(
        settings, available_now=available_now, timeout_s=timeout, starting_offsets=starting_offsets
    )
    flagged = sum(b["flagged"] for b in report.batches)
    dead = sum(b["dead_letters"] for b in report.batches)
    typer.echo(
        f"{report.rows} records in {len(report.batches)} batches, {flagged} flagged, "
        f"{dead} dead letters, {report.seconds:.1f}s; lake: {settings.stream.output_dir}"
    )


@app.command()
def demo(
    config: ConfigOption = None,
    limit: Annotated[
        int | None, typer.Option(help="Replay only the first N transactions (0: all).")
    ] = 0,
    period: Annotated[
        str, typer.Option(help="test: the model's held-out period; all: the whole source.")
    ] = "test",
    rate: Annotated[
        float | None, typer.Option(help="Messages per second (0: as fast as possible).")
    ] = 1000,
    keep_up: Annotated[bool, typer.Option(help="Leave the services running afterwards.")] = False,
) -> None:
    """Run the whole pipeline end to end on the embedded services and print what happened."""
    from fraudkit.demo import format_summary, run_demo

    settings = _settings(config, use_state=False)
    summary = run_demo(
        settings,
        limit=limit or None,
        period=period,
        rate=rate or None,
        stop_services=not keep_up,
        say=typer.echo,
    )
    typer.echo("")
    typer.echo(format_summary(summary))
    if summary["missing"] or summary["duplicates"]:
        _fail("transactions were lost or duplicated between the topic and the lake")


@app.command()
def train(
    config: ConfigOption = None,
    source: Annotated[str, typer.Option(help="sample, full, or a CSV path.")] = "sample",
    notebook: Annotated[
        bool,
        typer.Option(
            help="Run notebooks/02_train_model_shap.ipynb with papermill (the executed notebook, "
            "with its plots, is kept in the run folder); --no-notebook calls train_model only."
        ),
    ] = True,
) -> None:
    """Train the XGBoost model, choose its threshold on validation and save the artifact."""
    settings = _settings(config)
    if not notebook:
        from fraudkit.data import load_transactions
        from fraudkit.model import train_model

        frame = load_transactions(source, settings=settings)
        artifact = train_model(frame, settings=settings.model)
        artifact.save(settings.model.dir)
        typer.echo(json.dumps(artifact.metadata.get("metrics", {}), indent=2, default=str))
        typer.echo(f"saved {settings.model.dir}")
        return

    from datetime import UTC, datetime

    from papermill import PapermillExecutionError

    import fraudkit
    from fraudkit.notebook import run_notebook

    template = (
        Path(fraudkit.__file__).resolve().parents[1] / "notebooks" / "02_train_model_shap.ipynb"
    )
    if not template.is_file():
        _fail(f"notebook not found at {template}; run `fraudkit train --no-notebook` instead")
    folder = settings.run_dir / "train" / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    folder.mkdir(parents=True, exist_ok=True)
    output = folder / template.name
    parameters = {"SOURCE": source, "MODEL_DIR": str(settings.model.dir)}
    if config is not None:
        parameters["CONFIG"] = str(config.resolve())
    typer.echo(f"running {template.name} on {source}; executed notebook: {output}")
    try:
        results = run_notebook(template, output, parameters, cwd=settings.root)
    except PapermillExecutionError as exc:
        _fail(
            f"the notebook failed in cell {exc.cell_index}: {exc.ename}: {exc.evalue}; see {output}"
        )
    keys = (
        "test_auprc",
        "test_roc_auc",
        "logistic_test_auprc",
        "random_split_test_auprc",
        "threshold",
        "test_at_threshold",
        "test_precision_at_k",
        "calibration",
        "training_seconds",
        "comparison",
    )
    typer.echo(json.dumps({k: results.get(k) for k in keys}, indent=2, default=str))
    typer.echo(f"saved {results.get('model_dir', settings.model.dir)}; executed: {output}")


@data_app.command("fetch")
def data_fetch(config: ConfigOption = None) -> None:
    """Download the full creditcard.csv (284,807 rows) and verify its sha256."""
    from fraudkit.data import fetch_full

    settings = _settings(config)
    path = fetch_full(settings.data.full_path)
    typer.echo(f"full data set ready: {path}")


@data_app.command("info")
def data_info(
    config: ConfigOption = None,
    source: Annotated[str, typer.Option(help="sample, full, or a CSV path.")] = "sample",
) -> None:
    """Rows, frauds, time span and sampling rate of a data source."""
    from fraudkit.data import load_transactions

    frame = load_transactions(source, settings=_settings(config))
    frauds = int(frame["Class"].sum())
    typer.echo(
        f"{source}: {len(frame)} rows, {frauds} frauds ({100 * frauds / len(frame):.3f}%), "
        f"Time {frame['Time'].min():.0f}..{frame['Time'].max():.0f}s, legit sample rate "
        f"{frame.attrs.get('legit_sample_rate', 1.0)}"
    )


if __name__ == "__main__":
    app()
