"""Benchmarks: throughput and latency of each stage, printed as numbers and ratios.

Run with ``make bench``. Nothing here asserts a time; the numbers are for reading and for
comparing one change with the next. Each stage runs on the committed sample's rows, repeated
to the size asked.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import pandas as pd

from fraudkit.config import load_settings, with_service_endpoints
from fraudkit.data import load_transactions
from fraudkit.demo import run_demo
from fraudkit.model import ensure_model
from fraudkit.schema import parse_messages, to_messages


def rows(n: int) -> pd.DataFrame:
    """``n`` sample rows (the sample repeated), with unique tx_ids."""
    sample = load_transactions("sample")
    reps = -(-n // len(sample))
    frame = pd.concat([sample] * reps, ignore_index=True).iloc[:n].copy()
    frame["tx_id"] = [f"bench-{i:08d}" for i in range(n)]
    return frame


def timed(fn, *args, repeat: int = 3, **kwargs) -> float:
    """The best wall time of ``repeat`` runs, in seconds."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        fn(*args, **kwargs)
        best = min(best, time.perf_counter() - started)
    return best


def main() -> None:
    """Run every benchmark and print one line each, then a JSON summary."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=100_000, help="rows for the core stages")
    parser.add_argument("--stream-rows", type=int, default=5_000, help="rows for the stream")
    parser.add_argument("--rate", type=float, default=1_000, help="producer rate for the stream")
    args = parser.parse_args()

    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "runs"
        settings = load_settings(
            overrides={"run_dir": str(run_dir)},
            use_state=False,
        )
        frame = rows(args.rows)
        messages = [value for _, value in to_messages(frame)]
        seconds = timed(parse_messages, messages)
        results["parse_rows_per_s"] = len(messages) / seconds

        artifact = ensure_model(with_service_endpoints(settings))
        parsed, _ = parse_messages(messages)
        seconds = timed(artifact.predict_proba, parsed)
        results["score_rows_per_s"] = len(parsed) / seconds

        from fraudkit.explain import top_contributions

        flagged = parsed.iloc[:1000]
        seconds = timed(top_contributions, artifact, flagged, k=5)
        results["contributions_rows_per_s"] = len(flagged) / seconds

        summary = run_demo(
            settings,
            limit=args.stream_rows,
            period="all",
            rate=args.rate,
            say=lambda _: None,
        )
        results["stream_latency_p50_s"] = summary["latency_s"]["p50"]
        results["stream_latency_p99_s"] = summary["latency_s"]["p99"]
        results["spark_startup_s"] = summary["spark_startup_seconds"]
        flood = run_demo(  # as fast as the producer can: the stream's capacity
            settings,
            limit=args.stream_rows * 4,
            period="all",
            rate=None,
            say=lambda _: None,
        )
        results["produce_rate_per_s"] = flood["produce_rate_per_s"]
        results["stream_capacity_rows_per_s"] = flood["throughput_rows_per_s"]

    print(f"parse (orjson + validation)   {results['parse_rows_per_s']:>12,.0f} rows/s")
    print(f"score (features + XGBoost)    {results['score_rows_per_s']:>12,.0f} rows/s")
    print(f"top-k SHAP contributions      {results['contributions_rows_per_s']:>12,.0f} rows/s")
    print(f"producer (kafka-python)       {results['produce_rate_per_s']:>12,.0f} msg/s")
    print(f"stream capacity (Spark)       {results['stream_capacity_rows_per_s']:>12,.0f} rows/s")
    print(
        f"stream latency p50 / p99      {results['stream_latency_p50_s']:.2f}s / "
        f"{results['stream_latency_p99_s']:.2f}s at {args.rate:.0f} msg/s"
    )
    ratio = results["score_rows_per_s"] / results["parse_rows_per_s"]
    print(f"ratio score / parse           {ratio:>12.1f}x")
    print(
        "ratio stream capacity / rate  "
        f"{results['stream_capacity_rows_per_s'] / args.rate:>12.1f}x (headroom over --rate)"
    )
    print(json.dumps({k: round(float(v), 4) for k, v in results.items() if v is not None}))


if __name__ == "__main__":
    main()
