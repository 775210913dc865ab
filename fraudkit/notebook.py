"""Notebook helpers: recording named results, and running a notebook with papermill."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def record_results(results: dict[str, Any], path: str | Path | None = None) -> dict[str, Any]:
    """Record a notebook's named results: printed, and written as JSON when ``path`` is set.

    The notebook tests run each notebook with papermill, pass ``path`` as a parameter, and
    check the values with tolerances.
    """
    text = json.dumps(results, indent=2, default=str, sort_keys=True)
    if path:
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    print(text)
    return results


def run_notebook(
    notebook: str | Path,
    output: str | Path,
    parameters: dict[str, Any] | None = None,
    *,
    cwd: str | Path | None = None,
) -> dict[str, Any]:
    """Execute ``notebook`` with papermill and return the named results its last cell recorded.

    The results go to a JSON file next to ``output`` (passed in as the ``RESULTS_PATH``
    parameter). A failing cell raises papermill's ``PapermillExecutionError``.
    """
    import papermill

    output = Path(output)
    results = output.with_suffix(".results.json")
    papermill.execute_notebook(
        str(notebook),
        str(output),
        parameters={**(parameters or {}), "RESULTS_PATH": str(results)},
        cwd=str(cwd or Path(notebook).resolve().parent),
        kernel_name="python3",
        progress_bar=False,
    )
    return json.loads(results.read_text())
