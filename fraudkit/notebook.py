"""Small helpers the notebooks share: recording named results for the tests."""

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
