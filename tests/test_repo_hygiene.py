"""What the repository itself promises: stripped notebooks, no secrets, no big or stray files."""

import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[1]
EMAIL = re.compile(r"[\w.+-]+@([\w-]+\.)+[a-z]{2,}", re.IGNORECASE)
ALLOWED_MAIL_DOMAINS = ("example", "example.com", "test")


def tracked_files() -> list[Path]:
    out = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    return [ROOT / line for line in out.splitlines() if (ROOT / line).is_file()]


def test_notebooks_are_committed_without_outputs_and_shaped_alike():
    notebooks = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    assert len(notebooks) >= 3
    for path in notebooks:
        nb = nbformat.read(path, as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert all(not c.get("outputs") and c.get("execution_count") is None for c in code), path
        tagged = [c for c in code if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1, f"{path.name}: one cell tagged parameters"
        assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")
        assert "record_results" in code[-1].source, f"{path.name}: last code cell records results"
        assert nb.metadata["kernelspec"]["name"] == "python3"
        for cell in code:
            assert "sys.path" not in cell.source and "%run" not in cell.source, path.name
            assert "def " not in cell.source, f"{path.name}: functions live in fraudkit/"


def test_no_large_files_keys_or_real_addresses():
    for path in tracked_files():
        assert path.stat().st_size < 8 * 1024 * 1024, f"{path} is large"
        if path.suffix in (".gz", ".parquet", ".png"):
            continue
        text = path.read_text(errors="replace")
        assert "PRIVATE " + "KEY-----" not in text, path  # split, so this file passes
        assert not re.search(r"AKIA[0-9A-Z]{16}", text), path
        assert not re.search(r"sk-[A-Za-z0-9]{20,}", text), path
        for match in EMAIL.finditer(text):
            domain = match.group(0).rsplit("@", 1)[1].lower()
            assert domain.endswith(ALLOWED_MAIL_DOMAINS), f"{path}: {match.group(0)}"


def test_importing_every_module_has_no_side_effects(tmp_path):
    script = (
        "import importlib, logging, pkgutil, sys\n"
        "import fraudkit, services\n"
        "for pkg in (fraudkit, services):\n"
        "    for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + '.'):\n"
        "        importlib.import_module(m.name)\n"
        "assert not logging.getLogger().handlers, 'logging configured at import'\n"
        "from pyspark.sql import SparkSession\n"
        "assert SparkSession.getActiveSession() is None, 'a Spark session at import'\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert list(tmp_path.iterdir()) == [], "importing created files"
