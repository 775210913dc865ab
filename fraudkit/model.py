"""The model: a time-ordered split, XGBoost, a threshold chosen on money, and a checked artifact.

Core code: DataFrames in, a :class:`ModelArtifact` out. The features come only from
:func:`fraudkit.features.build_features`, the same function the stream calls, and the label is
never among them.

- Split by ``Time``: train on the past, choose the threshold on the next slice (validation),
  report on the most recent one (test). A random split leaks the future into training and
  flatters the model; :func:`random_split` is here to show by how much.
- The threshold is a business decision, not 0.5: :func:`choose_threshold` minimises the
  expected cost (missed fraud Amount + a review cost per alert) or maximises recall under an
  alert budget, on the validation split.
- Scores are calibrated probabilities: a Platt scaling of the booster's log-odds, fitted on
  the validation split with the legitimate rows re-weighted to the population, undoes both
  ``scale_pos_weight`` and the sample's 10% share of legitimate rows (which alone would
  over-state every probability about tenfold). It is monotone, so rankings, AUPRC and the
  flagged set are unchanged, and linear in log-odds, so SHAP contributions stay additive.
- The artifact is two files: ``model.json`` (XGBoost's own JSON) and ``metadata.json`` (the
  feature list and order, the threshold and how it was chosen, the calibration, metrics with
  intervals, the data's fingerprint, library versions). :meth:`ModelArtifact.load` refuses an
  artifact whose features do not match the code's.
- :func:`train_logistic` is the baseline every model must beat: a standardised, class-weighted
  logistic regression on the same features.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import sklearn
import xgboost as xgb
from scipy.special import expit
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

import fraudkit
from fraudkit.config import ModelSettings, Settings
from fraudkit.data import legit_weights, load_transactions
from fraudkit.evaluate import calibration_summary, days_spanned, evaluate, threshold_curve
from fraudkit.features import FEATURE_COLUMNS, FEATURE_VERSION, build_features
from fraudkit.schema import AMOUNT, ID, LABEL, TIME

MODEL_FILE = "model.json"
METADATA_FILE = "metadata.json"

#: XGBoost settings; ``train_model(params=...)`` overrides any of them. Depth, min_child_weight
#: and scale_pos_weight come from a small grid (depth 3/4/6 x 1/5 x 1/10) judged on the
#: validation split of the full data and the sample: all 12 lay within 0.03 AUPRC of each
#: other, well inside the bootstrap interval, so this is a sensible middle, not a tuned optimum.
DEFAULT_PARAMS: dict[str, Any] = {
    "objective": "binary:logistic",
    "eval_metric": "aucpr",
    "tree_method": "hist",
    "nthread": 2,
    "max_depth": 4,
    "eta": 0.05,
    "min_child_weight": 5,
    "subsample": 0.8,
    "colsample_bytree": 0.8,
    "scale_pos_weight": 1.0,
}
NUM_BOOST_ROUND = 600
EARLY_STOPPING_ROUNDS = 50


class ArtifactError(RuntimeError):
    """A model artifact is missing, corrupt, or does not match the code's features."""


def _json_safe(value: Any) -> Any:
    """NaN and infinities become None, so metadata.json is strict JSON."""
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


# --------------------------------------------------------------------------------------------
# Splits


@dataclass
class Split:
    """Train / validation / test frames and, for a time split, where they start in seconds."""

    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame
    boundaries: tuple[float, float] | None
    kind: Literal["time", "random"]

    def summary(self) -> dict[str, Any]:
        """Rows, frauds and Time range of each part, as a plain dict."""
        parts = {"train": self.train, "valid": self.valid, "test": self.test}
        bounds = list(self.boundaries) if self.boundaries is not None else None
        out: dict[str, Any] = {"kind": self.kind, "boundaries_s": bounds}
        for name, frame in parts.items():
            out[name] = {
                "rows": int(len(frame)),
                "frauds": int(frame[LABEL].sum()) if LABEL in frame else None,
                "time_min_s": float(frame[TIME].min()) if len(frame) else None,
                "time_max_s": float(frame[TIME].max()) if len(frame) else None,
            }
        return out


def _check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    if len(fractions) != 3 or any(f <= 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-9:
        raise ValueError(f"fractions must be three positive numbers adding to 1, got {fractions}")
    return float(fractions[0]), float(fractions[1]), float(fractions[2])


def time_split(df: pd.DataFrame, fractions: Sequence[float] = (0.6, 0.2, 0.2)) -> Split:
    """Split by ``Time``: the oldest rows train, the next validate, the most recent test.

    The cut points are the ``Time`` values at the row fractions; rows that share a ``Time``
    stay together, so ``train.Time < valid.Time <= ...`` holds strictly across boundaries.

    Args:
        df: transactions with a ``Time`` column.
        fractions: shares of rows for train, validation, test.

    Returns:
        A :class:`Split`; ``boundaries`` are the first ``Time`` of validation and of test.
    """
    f_train, f_valid, _ = _check_fractions(fractions)
    ordered = df.sort_values(TIME, kind="stable").reset_index(drop=True)
    times = ordered[TIME].to_numpy()
    n = len(ordered)
    if n < 3:
        raise ValueError(f"need at least 3 rows to split, got {n}")
    t_valid = float(times[min(int(round(n * f_train)), n - 1)])
    t_test = float(times[min(int(round(n * (f_train + f_valid))), n - 1)])
    if not times[0] < t_valid < t_test:
        raise ValueError("too few distinct Time values to split by time")
    i_valid = int(np.searchsorted(times, t_valid, side="left"))
    i_test = int(np.searchsorted(times, t_test, side="left"))
    cuts = [(0, i_valid), (i_valid, i_test), (i_test, n)]
    parts = [ordered.iloc[a:b].reset_index(drop=True) for a, b in cuts]
    for part in parts:
        part.attrs = dict(df.attrs)
    return Split(*parts, boundaries=(t_valid, t_test), kind="time")


def random_split(
    df: pd.DataFrame, fractions: Sequence[float] = (0.6, 0.2, 0.2), *, seed: int = 7
) -> Split:
    """A random split stratified by ``Class``, for comparison with :func:`time_split`.

    Each part is sorted by ``Time``. Transactions from the future end up in training, which is
    why results on random splits look better than what a deployed model sees.
    """
    f_train, f_valid, _ = _check_fractions(fractions)
    rng = np.random.default_rng(seed)
    labels = df[LABEL].to_numpy()
    assignment = np.empty(len(df), dtype=np.int8)
    for value in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == value))
        a, b = int(round(len(rows) * f_train)), int(round(len(rows) * (f_train + f_valid)))
        assignment[rows[:a]], assignment[rows[a:b]], assignment[rows[b:]] = 0, 1, 2
    parts = []
    for code in range(3):
        part = df[assignment == code].sort_values(TIME, kind="stable").reset_index(drop=True)
        part.attrs = dict(df.attrs)
        parts.append(part)
    return Split(*parts, boundaries=None, kind="random")


# --------------------------------------------------------------------------------------------
# Threshold


@dataclass(frozen=True)
class ThresholdChoice:
    """The alert threshold (alert when score >= threshold) and what it is expected to do."""

    threshold: float
    strategy: Literal["cost", "budget"]
    expected_cost: float
    alerts_per_day: float
    recall: float
    precision: float
    alerts: float
    review_cost: float
    alert_budget_per_day: float
    days: float

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python form, for JSON."""
        return asdict(self)


def choose_threshold(
    y: np.ndarray,
    scores: np.ndarray,
    amounts: np.ndarray,
    *,
    strategy: Literal["cost", "budget"] = "cost",
    review_cost: float = 5.0,
    alerts_per_day: float = 100.0,
    days: float = 1.0,
    weights: np.ndarray | None = None,
) -> ThresholdChoice:
    """Choose the alert threshold on labelled scores (normally the validation split).

    Candidates are the midpoints between consecutive distinct scores (plus "alert on every
    row" and "alert on none"), so each candidate flags the top-n rows for some n; the whole
    curve is :func:`fraudkit.evaluate.threshold_curve`.

    - ``"cost"``: minimise ``sum(Amount of missed frauds) + review_cost * alerts``.
    - ``"budget"``: the highest recall whose ``alerts / days <= alerts_per_day``.

    Ties go to the higher threshold (fewer alerts).

    Args:
        y: labels, 1 = fraud.
        scores: model scores.
        amounts: transaction amounts (what a missed fraud costs).
        strategy: ``"cost"`` or ``"budget"``.
        review_cost: cost of reviewing one alert.
        alerts_per_day: the alert budget (used by ``"budget"``; reported for both).
        days: how many days the rows cover (see :func:`fraudkit.evaluate.days_spanned`).
        weights: optional row weights (e.g. ``1 / rate`` for sampled legit rows).
    """
    if strategy not in ("cost", "budget"):
        raise ValueError(f"strategy must be 'cost' or 'budget', got {strategy!r}")
    curve = threshold_curve(y, scores, amounts, review_cost=review_cost, days=days, weights=weights)
    cost = curve["cost"].to_numpy()
    per_day = curve["alerts_per_day"].to_numpy()
    caught = curve["caught"].to_numpy()
    if strategy == "cost":
        best = int(np.flatnonzero(cost == cost.min())[0])
    else:
        allowed = np.flatnonzero(per_day <= alerts_per_day)  # candidate 0 always qualifies
        best = int(allowed[np.argmax(caught[allowed])])
    row = curve.iloc[best]
    return ThresholdChoice(
        threshold=float(row["threshold"]),
        strategy=strategy,
        expected_cost=float(row["cost"]),
        alerts_per_day=float(row["alerts_per_day"]),
        recall=float(row["recall"]),
        precision=float(row["precision"]),
        alerts=float(row["alerts"]),
        review_cost=float(review_cost),
        alert_budget_per_day=float(alerts_per_day),
        days=float(days),
    )


# --------------------------------------------------------------------------------------------
# Artifact


def _features(raw: pd.DataFrame) -> pd.DataFrame:
    features = build_features(raw)
    leaked = [c for c in (LABEL, ID) if c in features.columns]
    if leaked:  # build_features must never pass the label (or the id) through
        raise AssertionError(f"{leaked} among the model features: label leakage")
    return features


@dataclass
class ModelArtifact:
    """A trained booster and the metadata that says what it expects and how it was made."""

    booster: xgb.Booster
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def threshold(self) -> float:
        """Alert when ``predict_proba >= threshold``."""
        return float(self.metadata["threshold"]["threshold"])

    @property
    def model_id(self) -> str:
        """A short id of the trees: ``xgb-`` + the first 12 hex digits of their JSON's sha256."""
        if "model_id" not in self.metadata:
            self.metadata["model_id"] = _model_id(self.booster)
        return str(self.metadata["model_id"])

    @property
    def features(self) -> list[str]:
        """The feature names, in the order the booster expects them."""
        return list(self.metadata["features"])

    @property
    def calibration(self) -> tuple[float, float]:
        """``(slope, intercept)`` applied to the booster's log-odds; ``(1, 0)`` when none."""
        cal = self.metadata.get("calibration") or {}
        if cal.get("method") != "platt":
            return 1.0, 0.0
        return float(cal["slope"]), float(cal["intercept"])

    def _matrix(self, raw_df: pd.DataFrame) -> tuple[pd.DataFrame, xgb.DMatrix]:
        features = _features(raw_df)
        if list(features.columns) != self.features:
            raise ArtifactError(
                "build_features produced columns that differ from the artifact's: "
                f"{list(features.columns)} vs {self.features}"
            )
        return features, xgb.DMatrix(features, feature_names=self.features, nthread=2)

    def predict_proba(self, raw_df: pd.DataFrame, *, calibrated: bool = True) -> np.ndarray:
        """Fraud probability of each row of a raw frame (``Time, V1..V28, Amount``).

        Calibrated when the artifact has a calibration (see :attr:`calibration`);
        ``calibrated=False`` gives the booster's own output, to show what calibration changed.
        """
        if not calibrated:
            return self.booster.predict(self._matrix(raw_df)[1]).astype(np.float64)
        return expit(self.predict_margin(raw_df))

    def predict_margin(self, raw_df: pd.DataFrame) -> np.ndarray:
        """The calibrated log-odds of each row (what the contributions add up to)."""
        slope, intercept = self.calibration
        raw = self.booster.predict(self._matrix(raw_df)[1], output_margin=True)
        return slope * raw.astype(np.float64) + intercept

    def contributions(self, raw_df: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
        """Exact TreeSHAP contributions: the features the model saw, and (n, f + 1) log-odds.

        The last column of the array is the bias (the model's expected log-odds). With a
        calibration ``(a, b)`` every contribution is multiplied by ``a`` and ``b`` is added to
        the bias, so they still add up to :meth:`predict_margin`.
        """
        slope, intercept = self.calibration
        features, matrix = self._matrix(raw_df)
        contribs = slope * self.booster.predict(matrix, pred_contribs=True).astype(np.float64)
        contribs[:, -1] += intercept
        return features, contribs

    def save(self, directory: str | Path) -> Path:
        """Write ``model.json`` and ``metadata.json`` into ``directory`` (each atomically)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        model_tmp = directory / f".{MODEL_FILE}.part.json"
        self.booster.save_model(model_tmp)
        os.replace(model_tmp, directory / MODEL_FILE)
        fd, meta_tmp = tempfile.mkstemp(prefix=f".{METADATA_FILE}.", dir=directory)
        with os.fdopen(fd, "w") as fh:
            json.dump(_json_safe(self.metadata), fh, indent=2, allow_nan=False)
            fh.write("\n")
        os.replace(meta_tmp, directory / METADATA_FILE)
        return directory

    @classmethod
    def load(
        cls,
        directory: str | Path,
        expected_features: Sequence[str] = FEATURE_COLUMNS,
        expected_feature_version: str | None = FEATURE_VERSION,
    ) -> ModelArtifact:
        """Load and check an artifact.

        Args:
            directory: the folder that :meth:`save` wrote.
            expected_features: the feature names and order the code produces.
            expected_feature_version: ``features.FEATURE_VERSION``; None skips the check.

        Raises:
            ArtifactError: a file is missing or corrupt, or the features, their order or the
                feature version differ from what the code expects.
        """
        directory = Path(directory)
        model_path, meta_path = directory / MODEL_FILE, directory / METADATA_FILE
        missing = [p.name for p in (model_path, meta_path) if not p.is_file()]
        if missing:
            raise ArtifactError(
                f"no model artifact in {directory}: missing {', '.join(missing)}. "
                "Train one (fraudkit.model.ensure_model trains on the sample and saves it)."
            )
        try:
            metadata = json.loads(meta_path.read_text())
            threshold = float(metadata["threshold"]["threshold"])
            features = list(metadata["features"])
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ArtifactError(f"{meta_path} is not valid JSON: {exc}") from exc
        except (KeyError, TypeError, ValueError) as exc:
            raise ArtifactError(f"{meta_path} lacks the features or threshold: {exc!r}") from exc
        if not np.isfinite(threshold):
            raise ArtifactError(f"{meta_path}: threshold {threshold} is not a number")
        booster = xgb.Booster()
        try:
            booster.load_model(model_path)
        except xgb.core.XGBoostError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise ArtifactError(f"XGBoost cannot load {model_path}: {first}") from exc
        expected = list(expected_features)
        if features != expected:
            raise ArtifactError(_feature_mismatch(meta_path, features, expected))
        if booster.feature_names is not None and list(booster.feature_names) != features:
            raise ArtifactError(
                f"{model_path} and {meta_path} disagree on the features: "
                f"{booster.feature_names} vs {features}"
            )
        version = metadata.get("feature_version")
        if expected_feature_version is not None and version != expected_feature_version:
            raise ArtifactError(
                f"{meta_path}: the model was trained on feature version {version!r}, the code "
                f"builds version {expected_feature_version!r}; retrain the model"
            )
        booster.set_param({"nthread": 2})
        return cls(booster=booster, metadata=metadata)


def _feature_mismatch(where: Path, found: list[str], expected: list[str]) -> str:
    extra = [f for f in found if f not in expected]
    absent = [f for f in expected if f not in found]
    if extra or absent:
        detail = f"unexpected {extra}, missing {absent}"
    else:
        detail = "same names in a different order"
    return f"{where}: the model's features do not match the code's ({detail}); retrain the model"


# --------------------------------------------------------------------------------------------
# Training


def data_fingerprint(df: pd.DataFrame) -> str:
    """sha256 of a frame's contents (values and column names, not the index)."""
    digest = hashlib.sha256()
    digest.update(",".join(map(str, df.columns)).encode())
    digest.update(pd.util.hash_pandas_object(df, index=False).to_numpy().tobytes())
    return digest.hexdigest()


def _model_id(booster: xgb.Booster) -> str:
    return "xgb-" + hashlib.sha256(bytes(booster.save_raw("json"))).hexdigest()[:12]


def fit_platt(
    margin: np.ndarray, y: np.ndarray, weights: np.ndarray | None = None
) -> dict[str, Any]:
    """Platt scaling: ``P(fraud) = sigmoid(slope * margin + intercept)``, fitted by likelihood.

    Args:
        margin: the booster's log-odds on held-out rows (normally the validation split).
        y: their labels.
        weights: row weights; pass :func:`fraudkit.data.legit_weights` so that a sample's
            probabilities are those of the population.

    Returns:
        The calibration record stored in the artifact's metadata: ``method`` (``"platt"``, or
        ``"none"`` when the fit is degenerate: one class only, or a slope that is not positive,
        which would reverse the ranking), ``slope``, ``intercept``.
    """
    y = np.asarray(y).ravel()
    if len(np.unique(y)) < 2:
        return {"method": "none", "slope": 1.0, "intercept": 0.0, "reason": "one class only"}
    fit = LogisticRegression(C=1e6, max_iter=1000)  # effectively unpenalised
    fit.fit(np.asarray(margin, dtype=np.float64).reshape(-1, 1), y, sample_weight=weights)
    slope, intercept = float(fit.coef_[0, 0]), float(fit.intercept_[0])
    if not slope > 0:
        return {"method": "none", "slope": 1.0, "intercept": 0.0, "reason": "slope <= 0"}
    return {"method": "platt", "slope": slope, "intercept": intercept}


def evaluate_frame(
    frame: pd.DataFrame,
    scores: np.ndarray,
    *,
    threshold: float,
    settings: ModelSettings | None = None,
    n_boot: int = 1000,
) -> dict[str, Any]:
    """:func:`fraudkit.evaluate.evaluate` on a labelled frame, re-weighted, plus calibration.

    Labels, amounts, times and the sample weights (:func:`fraudkit.data.legit_weights`) come
    from ``frame``; the review cost, alert budget and bootstrap seed from ``settings``.
    """
    settings = settings or ModelSettings()
    weights = legit_weights(frame)
    y = frame[LABEL].to_numpy()
    metrics = evaluate(
        y,
        scores,
        frame[AMOUNT].to_numpy(),
        frame[TIME].to_numpy(),
        threshold=threshold,
        review_cost=settings.review_cost,
        alerts_per_day=settings.alerts_per_day,
        weights=weights,
        n_boot=n_boot,
        seed=settings.seed,
    )
    metrics["calibration"] = calibration_summary(y, scores, weights)
    return metrics


def train_model(
    df: pd.DataFrame,
    *,
    settings: ModelSettings | None = None,
    params: dict[str, Any] | None = None,
    fractions: Sequence[float] = (0.6, 0.2, 0.2),
    n_boot: int = 1000,
    split: Literal["time", "random"] = "time",
    calibrate: bool = True,
) -> ModelArtifact:
    """Train XGBoost, calibrate and choose the threshold on validation, report on test.

    Metrics and the threshold are computed with legit rows weighted by
    ``1 / df.attrs["legit_sample_rate"]``, so alert counts and costs measured on the sample
    estimate the full data's. Training itself is unweighted (``scale_pos_weight`` is the knob);
    the calibration undoes both.

    Args:
        df: labelled transactions (``load_transactions``), ``Class`` included.
        settings: threshold strategy, review cost, alert budget and seed.
        params: XGBoost parameters that override :data:`DEFAULT_PARAMS`
            (e.g. ``{"scale_pos_weight": 10, "max_depth": 6}``); ``num_boost_round`` and
            ``early_stopping_rounds`` are accepted too.
        fractions: train / validation / test shares.
        n_boot: bootstrap resamples for the AUPRC intervals.
        split: ``"time"`` (the honest one) or ``"random"`` (stratified; only to show the gap).
        calibrate: fit :func:`fit_platt` on validation and store it in the artifact.

    Returns:
        The trained :class:`ModelArtifact` (not saved; call :meth:`ModelArtifact.save`).
        ``metadata["training_seconds"]`` is the wall time of the boosting alone.
    """
    settings = settings or ModelSettings()
    rate = float(df.attrs.get("legit_sample_rate", 1.0))
    if split == "time":
        parts = time_split(df, fractions)
    elif split == "random":
        parts = random_split(df, fractions, seed=settings.seed)
    else:
        raise ValueError(f"split must be 'time' or 'random', got {split!r}")
    full_params = {**DEFAULT_PARAMS, "seed": settings.seed, **(params or {})}
    rounds = int(full_params.pop("num_boost_round", NUM_BOOST_ROUND))
    stopping = int(full_params.pop("early_stopping_rounds", EARLY_STOPPING_ROUNDS))

    x_train, x_valid = _features(parts.train), _features(parts.valid)
    names = list(x_train.columns)
    d_train = xgb.DMatrix(x_train, label=parts.train[LABEL].to_numpy(), feature_names=names)
    d_valid = xgb.DMatrix(x_valid, label=parts.valid[LABEL].to_numpy(), feature_names=names)
    started = time.perf_counter()
    booster = xgb.train(
        full_params,
        d_train,
        num_boost_round=rounds,
        evals=[(d_valid, "valid")],
        early_stopping_rounds=stopping,
        verbose_eval=False,
    )
    training_seconds = time.perf_counter() - started
    best_iteration = int(booster.best_iteration)
    booster = booster[: best_iteration + 1]  # keep only the trees early stopping chose

    artifact = ModelArtifact(booster=booster, metadata={"features": names})
    calibration = {"method": "none", "slope": 1.0, "intercept": 0.0}
    if calibrate:
        calibration = fit_platt(
            artifact.predict_margin(parts.valid),
            parts.valid[LABEL].to_numpy(),
            legit_weights(parts.valid),
        )
    artifact.metadata["calibration"] = {**calibration, "fitted_on": "valid"}
    valid_scores = artifact.predict_proba(parts.valid)
    choice = choose_threshold(
        parts.valid[LABEL].to_numpy(),
        valid_scores,
        parts.valid[AMOUNT].to_numpy(),
        strategy=settings.threshold_strategy,
        review_cost=settings.review_cost,
        alerts_per_day=settings.alerts_per_day,
        days=days_spanned(parts.valid[TIME].to_numpy()),
        weights=legit_weights(parts.valid),
    )
    metrics = {
        name: evaluate_frame(
            frame, scores, threshold=choice.threshold, settings=settings, n_boot=n_boot
        )
        for name, frame, scores in (
            ("valid", parts.valid, valid_scores),
            ("test", parts.test, artifact.predict_proba(parts.test)),
        )
    }
    artifact.metadata = {
        "model_id": _model_id(booster),
        "features": names,
        "feature_version": FEATURE_VERSION,
        "threshold": {**choice.to_dict(), "chosen_on": "valid"},
        "calibration": artifact.metadata["calibration"],
        "metrics": metrics,
        "params": full_params,
        "num_boost_round": rounds,
        "early_stopping_rounds": stopping,
        "best_iteration": best_iteration,
        "n_trees": best_iteration + 1,
        "training_seconds": training_seconds,
        "split": parts.summary(),
        "legit_sample_rate": rate,
        "data": {
            "source": df.attrs.get("source"),
            "rows": int(len(df)),
            "frauds": int(df[LABEL].sum()),
            "fingerprint_sha256": data_fingerprint(df),
        },
        "versions": {
            "fraudkit": fraudkit.__version__,
            "xgboost": xgb.__version__,
            "pandas": pd.__version__,
            "numpy": np.__version__,
            "scikit-learn": sklearn.__version__,
            "python": platform.python_version(),
        },
        "created_utc": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    return artifact


def compare_params(
    df: pd.DataFrame,
    grid: Sequence[dict[str, Any]],
    *,
    settings: ModelSettings | None = None,
    n_boot: int = 200,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Train one model per parameter set and pick the best on **validation** AUPRC.

    The test AUPRC is shown beside it for the reader, never used to choose: picking on test
    would make the reported number optimistic.

    Returns:
        A table (one row per parameter set: validation and test AUPRC, trees, seconds) and
        the chosen parameter set.
    """
    if not grid:
        raise ValueError("the grid is empty")
    rows = []
    for params in grid:
        artifact = train_model(df, settings=settings, params=params, n_boot=n_boot)
        metrics = artifact.metadata["metrics"]
        rows.append(
            {
                "params": json.dumps(params, sort_keys=True),
                "valid_auprc": metrics["valid"]["auprc"]["value"],
                "test_auprc": metrics["test"]["auprc"]["value"],
                "n_trees": artifact.metadata["n_trees"],
                "training_seconds": artifact.metadata["training_seconds"],
            }
        )
    table = pd.DataFrame(rows)
    best = int(table["valid_auprc"].to_numpy().argmax())
    return table, dict(grid[best])


# --------------------------------------------------------------------------------------------
# The baseline


@dataclass
class LogisticBaseline:
    """A standardised, class-weighted logistic regression on :func:`build_features` output."""

    pipeline: Pipeline
    features: list[str]

    def predict_proba(self, raw_df: pd.DataFrame) -> np.ndarray:
        """Fraud score of each row of a raw frame (not calibrated: ``class_weight`` shifts it)."""
        features = _features(raw_df)[self.features]
        return self.pipeline.predict_proba(features.to_numpy())[:, 1].astype(np.float64)


def train_logistic(
    train: pd.DataFrame,
    *,
    class_weight: str | dict[int, float] | None = "balanced",
    c: float = 1.0,
    max_iter: int = 2000,
) -> LogisticBaseline:
    """Fit the logistic-regression baseline on a labelled training frame.

    Args:
        train: labelled transactions (normally ``time_split(df).train``).
        class_weight: scikit-learn's ``class_weight``; ``"balanced"`` weighs each class by
            the inverse of its frequency.
        c: inverse regularisation strength.
        max_iter: solver iterations.
    """
    features = _features(train)
    pipeline = make_pipeline(
        StandardScaler(),
        LogisticRegression(C=c, class_weight=class_weight, max_iter=max_iter),
    )
    pipeline.fit(features.to_numpy(), train[LABEL].to_numpy())
    return LogisticBaseline(pipeline=pipeline, features=list(features.columns))


def ensure_model(settings: Settings) -> ModelArtifact:
    """The model at ``settings.model.dir``; if there is none yet, train on the sample and save.

    A model that exists but is corrupt or stale raises :class:`ArtifactError` rather than
    being silently replaced.
    """
    directory = settings.model.dir
    if (directory / MODEL_FILE).exists() or (directory / METADATA_FILE).exists():
        return ModelArtifact.load(directory)
    artifact = train_model(load_transactions("sample"), settings=settings.model)
    artifact.save(directory)
    return ModelArtifact.load(directory)
