"""Explanations for flagged transactions: a rule template, LLM providers, and the stream's client.

A flagged transaction arrives as an :class:`ExplainItem`: its score, the alert threshold, the
amount and the model's top feature contributions (SHAP values, largest first). Every provider
turns a list of items into one :class:`Explanation` per item, in the same order:

- :class:`TemplateProvider` (the offline default) writes the explanation from the contributions
  and the score alone, by rules. It is deterministic and always available.
- :class:`OpenAICompatibleProvider` asks any OpenAI-compatible chat endpoint (OpenAI itself, or
  llama.cpp serving a small local model); :class:`BedrockProvider` asks Amazon Bedrock's
  ``converse`` API. Both send the same prompt (:func:`build_messages`), parse the answer
  robustly (:func:`extract_json_object`, :func:`validate_answer`) and, when the answer is
  unusable or the call fails, return the template's explanation with ``fallback=True`` and the
  cause in ``error``. They never raise to the caller.
- :class:`ExplanationClient` is what the stream calls once per micro-batch: one HTTP request to
  the explanation service (``services/llm_service``), falling back to the template locally when
  the service is down, slow or wrong, so that the stream never stops.

The LLM only ever sees numbers and feature names, never the transaction id or free text, so a
transaction cannot smuggle instructions into the prompt. Importing this module has no side
effects.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from collections.abc import Sequence
from typing import Any, Literal, Protocol, runtime_checkable

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from fraudkit.config import ConfigError, Settings
from fraudkit.features import FEATURE_COLUMNS

logger = logging.getLogger(__name__)

#: The most items one request to the explanation service may carry.
MAX_BATCH = 500
#: The most contributions one item may carry (``llm.top_k`` is at most 30).
MAX_CONTRIBUTIONS = 30
#: A score at or above this asks for the transaction to be held, not only reviewed.
HOLD_SCORE = 0.9
#: An amount at or above this (in the data set's currency) asks for a look at the card's history.
LARGE_AMOUNT = 500.0
#: How many raising features the template names.
TEMPLATE_TOP_FEATURES = 3
#: The share of ``llm.timeout_s`` the service may spend on one batch, leaving the stream's
#: client (which waits ``timeout_s``) time to receive the answer.
SERVICE_BUDGET_FRACTION = 0.75
#: Answer length asked of the LLM, in tokens.
MAX_ANSWER_TOKENS = 256

_MAX_REASON_CHARS = 400
_MAX_ACTION_CHARS = 160
_MAX_ERROR_CHARS = 300
_MAX_JSON_STARTS = 20
_MAX_REPAIR_CUTS = 12


# --------------------------------------------------------------------------------------------
# Data: what comes in, what goes out
# --------------------------------------------------------------------------------------------


class Contribution(BaseModel):
    """One feature's share in a score (a SHAP value in log-odds; positive raises the risk)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    feature: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    value: float
    contribution: float
    direction: Literal["raises risk", "lowers risk"]

    @model_validator(mode="after")
    def _direction_matches_sign(self) -> Contribution:
        if self.contribution > 0 and self.direction != "raises risk":
            raise ValueError("a positive contribution must have direction 'raises risk'")
        if self.contribution < 0 and self.direction != "lowers risk":
            raise ValueError("a negative contribution must have direction 'lowers risk'")
        return self


class ExplainItem(BaseModel):
    """A flagged transaction, as the explainer needs it: score, threshold, amount, contributions."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    tx_id: str = Field(min_length=1, max_length=128)
    score: float = Field(ge=0, le=1)
    threshold: float = Field(ge=0, le=1)
    amount: float = Field(ge=0)
    contributions: list[Contribution] = Field(default_factory=list, max_length=MAX_CONTRIBUTIONS)


class Explanation(BaseModel):
    """Why a transaction was flagged and what to do about it.

    ``provider`` names who wrote the text (``"template"`` when the template did, also as a
    fallback); ``fallback`` is True when another provider was asked and failed, and ``error``
    then says why. ``latency_ms`` is the time spent on this item.
    """

    model_config = ConfigDict(extra="forbid")

    tx_id: str
    reason: str = Field(min_length=1)
    actions: list[str] = Field(min_length=1, max_length=4)
    confidence: float = Field(ge=0, le=1)
    provider: str
    fallback: bool = False
    error: str | None = None
    latency_ms: float = Field(0.0, ge=0)


class ExplainRequest(BaseModel):
    """The body of ``POST /explain``."""

    model_config = ConfigDict(extra="forbid")

    items: list[ExplainItem] = Field(max_length=MAX_BATCH)


class ExplainResponse(BaseModel):
    """The answer of ``POST /explain``: one explanation per item, in the same order."""

    explanations: list[Explanation]


@runtime_checkable
class Provider(Protocol):
    """Something that explains flagged transactions."""

    name: str

    def explain(self, items: Sequence[ExplainItem]) -> list[Explanation]:
        """One explanation per item, in the same order. Never raises for a provider failure."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


# --------------------------------------------------------------------------------------------
# The template: rules over the contributions and the score
# --------------------------------------------------------------------------------------------


def describe_feature(feature: str, value: float, contribution: float) -> str:
    """Show a feature, its value and its SHAP share, e.g. ``V14 = -8.21 (SHAP +2.31)``."""
    if feature == "amount_log":
        shown = f"amount_log = {value:.2f} (amount {math.expm1(value):.2f}; "
    elif feature == "hour_of_day":
        shown = f"hour_of_day = {value:g} ("
    else:
        shown = f"{feature} = {value:.2f} ("
    return f"{shown}SHAP {contribution:+.2f})"


def rule_confidence(score: float, threshold: float) -> float:
    """How sure the flag is, from the score's distance to the threshold.

    0.5 at the threshold, rising to 1 at a score of 1, falling to 0 at a score of 0.
    """
    margin = score - threshold
    room = (1.0 - threshold) if margin >= 0 else threshold
    if room <= 0:
        return 0.5
    return round(min(1.0, max(0.0, 0.5 + 0.5 * margin / room)), 3)


def rule_actions(item: ExplainItem) -> list[str]:
    """Recommended actions, chosen by rules on the score, the margin and the amount."""
    if item.score < item.threshold:
        return ["No action needed: the score is below the alert threshold; keep monitoring"]
    actions = []
    if item.score >= HOLD_SCORE:
        actions.append("Hold the transaction until the cardholder confirms it")
    else:
        actions.append("Send the transaction to the analyst review queue")
    actions.append("Verify the transaction with the cardholder through a known channel")
    if item.amount >= LARGE_AMOUNT:
        actions.append(
            f"Review the card's recent transactions: the amount {item.amount:.2f} is large"
        )
    if item.score >= HOLD_SCORE and item.amount >= LARGE_AMOUNT:
        actions.append("Consider blocking the card if the cardholder cannot be reached")
    return actions[:4]


def template_reason(item: ExplainItem) -> str:
    """One or two sentences naming the top risk-raising features and the margin."""
    margin = item.score - item.threshold
    side = "above" if margin >= 0 else "below"
    head = f"Score {item.score:.3f} is {abs(margin):.3f} {side} the threshold {item.threshold:.3f}"
    ranked = sorted(item.contributions, key=lambda c: abs(c.contribution), reverse=True)
    raising = [c for c in ranked if c.contribution > 0][:TEMPLATE_TOP_FEATURES]
    lowering = [c for c in ranked if c.contribution < 0]
    if raising:
        phrases = [describe_feature(c.feature, c.value, c.contribution) for c in raising]
        named = phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]
        first = f"{head}; the risk is raised most by {named}."
    else:
        first = f"{head}; none of the given features raised the risk on its own."
    if lowering:
        c = lowering[0]
        second = f" {describe_feature(c.feature, c.value, c.contribution)} lowers it most."
    else:
        second = ""
    return first + second


def _elapsed_ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000.0, 3)


class TemplateProvider:
    """Explanations written by rules from the item's contributions and score; no LLM."""

    name = "template"

    def explain_one(self, item: ExplainItem) -> Explanation:
        """Explain one item by the template."""
        start = time.perf_counter()
        return Explanation(
            tx_id=item.tx_id,
            reason=template_reason(item),
            actions=rule_actions(item),
            confidence=rule_confidence(item.score, item.threshold),
            provider=self.name,
            latency_ms=_elapsed_ms(start),
        )

    def explain(self, items: Sequence[ExplainItem]) -> list[Explanation]:
        """One template explanation per item, in the same order."""
        return [self.explain_one(item) for item in items]

    def close(self) -> None:
        """Nothing to release."""


def fallback_explanations(items: Sequence[ExplainItem], error: str) -> list[Explanation]:
    """Template explanations marked as a fallback, with the cause in ``error``."""
    template = TemplateProvider()
    out = []
    for item in items:
        explanation = template.explain_one(item)
        explanation.fallback = True
        explanation.error = error[:_MAX_ERROR_CHARS]
        out.append(explanation)
    return out


def describe_error(exc: BaseException) -> str:
    """Render an exception as ``Type: message``, short enough to store with an alert."""
    text = f"{type(exc).__name__}: {exc}".strip()
    return text[:_MAX_ERROR_CHARS]


# --------------------------------------------------------------------------------------------
# The prompt
# --------------------------------------------------------------------------------------------

SYSTEM_PROMPT = """\
You are a fraud analyst's assistant at a card issuer. A fraud model flagged a card transaction. \
Explain why, using ONLY the numbers given: the model's score, its alert threshold, the amount \
and the feature contributions (SHAP values; a positive contribution raises the fraud risk, a \
negative one lowers it). V1..V28 are anonymised PCA components: name them, do not guess what \
they mean. amount_log is log(1 + amount); hour_of_day is the hour since the start of the data \
capture. Do not mention features that are not in the table.

Answer with exactly one JSON object and nothing else, in this form:
{"reason": "<one or two short sentences naming the features that raised the risk most>", \
"actions": ["<one to four short recommended actions for the analyst>"], \
"confidence": <a number from 0 to 1: how sure you are that this is fraud>}"""


def build_user_prompt(item: ExplainItem) -> str:
    """Write the transaction as the LLM sees it: score, threshold, amount, contributions."""
    ranked = sorted(item.contributions, key=lambda c: abs(c.contribution), reverse=True)
    lines = [
        "Flagged transaction:",
        f"score: {item.score:.3f} (threshold {item.threshold:.3f}, "
        f"margin {item.score - item.threshold:+.3f})",
        f"amount: {item.amount:.2f}",
        "",
        "Feature contributions, largest first:",
        "| feature | value | contribution | direction |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {c.feature} | {c.value:.3f} | {c.contribution:+.3f} | {c.direction} |" for c in ranked
    ]
    if not ranked:
        lines.append("| (none given) | | | |")
    lines += ["", "Reply with the JSON object only."]
    return "\n".join(lines)


def build_messages(item: ExplainItem) -> list[dict[str, str]]:
    """Build the chat messages for one item: the system contract, then the transaction."""
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": build_user_prompt(item)},
    ]


# --------------------------------------------------------------------------------------------
# Parsing the answer
# --------------------------------------------------------------------------------------------

_TRAILING_COMMA = re.compile(r",\s*([}\]])")
_CLOSERS = {"{": "}", "[": "]"}


def _loads_object(text: str) -> dict[str, Any] | None:
    for candidate in (text, _TRAILING_COMMA.sub(r"\1", text)):
        try:
            value = json.loads(candidate)
        except ValueError:
            continue
        return value if isinstance(value, dict) else None
    return None


def _close(fragment: str, stack: Sequence[str]) -> str:
    return fragment + "".join(_CLOSERS[c] for c in reversed(stack))


def _repair(
    fragment: str,
    stack: list[str],
    in_string: bool,
    escaped: bool,
    cuts: list[tuple[int, tuple[str, ...]]],
) -> dict[str, Any] | None:
    """Close a cut-off JSON object; prefer dropping a half-written value over keeping it."""
    whole = fragment[:-1] if escaped else fragment
    if in_string:
        whole += '"'
    whole = whole.rstrip().rstrip(",")
    candidates = [] if whole.endswith(":") else [_close(whole, stack)]
    shortened = [_close(fragment[:pos], cut_stack) for pos, cut_stack in reversed(cuts)]
    shortened = shortened[:_MAX_REPAIR_CUTS]
    candidates = shortened + candidates if in_string else candidates + shortened
    for candidate in candidates:
        value = _loads_object(candidate)
        if value is not None:
            return value
    return None


def _object_from(text: str, start: int) -> dict[str, Any] | None:
    """Parse the JSON object at ``text[start] == "{"``, repaired if the text ends early."""
    stack: list[str] = []
    in_string = escaped = False
    cuts: list[tuple[int, tuple[str, ...]]] = []
    for i in range(start, len(text)):
        ch = text[i]
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
            continue
        if ch == '"':
            in_string = True
        elif ch in _CLOSERS:
            stack.append(ch)
        elif ch in "}]":
            if not stack or _CLOSERS[stack[-1]] != ch:
                return None
            stack.pop()
            if not stack:
                return _loads_object(text[start : i + 1])
        elif ch == ",":
            cuts.append((i - start, tuple(stack)))
    return _repair(text[start:], stack, in_string, escaped, cuts)


def extract_json_object(text: str | None) -> dict[str, Any]:
    """Find the first JSON object in an LLM's answer.

    Tolerates prose or Markdown fences around the object, trailing commas, and an answer cut
    off before its end (the object is closed, dropping a half-written last value). Empty
    objects are skipped.

    Raises:
        ValueError: the answer is empty or holds no usable JSON object.

    """
    if text is None or not text.strip():
        raise ValueError("the answer is empty")
    starts = [i for i, ch in enumerate(text) if ch == "{"][:_MAX_JSON_STARTS]
    if not starts:
        raise ValueError("the answer holds no JSON object")
    for start in starts:
        value = _object_from(text, start)
        if value:  # an empty object is no answer
            return value
    raise ValueError("the answer's JSON could not be parsed or repaired")


def _shorten(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _as_confidence(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = float(value.strip().rstrip("%"))
        except ValueError:
            return None
    if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        return None
    if value > 1:
        value = value / 100.0 if value <= 100 else None
    return None if value is None else round(float(value), 3)


_KNOWN_FEATURES = re.compile(r"\b(" + "|".join(map(re.escape, FEATURE_COLUMNS)) + r")\b")


def validate_answer(answer: dict[str, Any], item: ExplainItem) -> tuple[str, list[str], float]:
    """Check an LLM's parsed answer against the contract and the item.

    Returns ``(reason, actions, confidence)``: the reason shortened, the actions cleaned (at most
    four), the LLM's confidence if it gave a usable number, else :func:`rule_confidence`.

    Raises:
        ValueError: the answer has no reason or no actions, or names features that are not in
            the item's contributions (an ungrounded answer).

    """
    if "reason" not in answer and len(answer) == 1:
        inner = next(iter(answer.values()))
        if isinstance(inner, dict):
            answer = inner
    reason = answer.get("reason")
    if not isinstance(reason, str) or not reason.strip():
        raise ValueError("the answer has no reason")
    raw_actions = answer.get("actions")
    if isinstance(raw_actions, str):
        raw_actions = [raw_actions]
    if not isinstance(raw_actions, list):
        raise ValueError("the answer has no list of actions")
    actions: list[str] = []
    for action in raw_actions:
        if isinstance(action, str) and action.strip():
            cleaned = _shorten(action, _MAX_ACTION_CHARS)
            if cleaned not in actions:
                actions.append(cleaned)
    if not actions:
        raise ValueError("the answer has no usable actions")
    given = {c.feature for c in item.contributions}
    unknown = sorted(set(_KNOWN_FEATURES.findall(reason)) - given)
    if unknown:
        raise ValueError(f"the answer names features not in the contributions: {unknown}")
    confidence = _as_confidence(answer.get("confidence"))
    if confidence is None:
        confidence = rule_confidence(item.score, item.threshold)
    return _shorten(reason, _MAX_REASON_CHARS), actions[:4], confidence


# --------------------------------------------------------------------------------------------
# LLM providers
# --------------------------------------------------------------------------------------------


class _ChatProvider:
    """The loop shared by LLM providers: ask per item, parse, validate, fall back.

    Subclasses implement :meth:`_complete` (one chat call) and :meth:`_is_outage` (an error
    after which the rest of the batch is not sent, e.g. connection refused or bad credentials).
    ``deadline_s`` bounds the time spent on one batch: items not reached in time get the
    template's explanation.
    """

    name = "llm"

    def __init__(self, timeout_s: float, deadline_s: float | None) -> None:
        if timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        self.timeout_s = timeout_s
        self.deadline_s = deadline_s

    def _complete(self, messages: list[dict[str, str]], timeout_s: float) -> str | None:
        raise NotImplementedError

    def _is_outage(self, exc: Exception) -> bool:
        raise NotImplementedError

    def _explain_one(self, item: ExplainItem, timeout_s: float) -> Explanation:
        """Ask the LLM about one item; the template's explanation if that fails.

        Raises:
            _Outage: the provider is unreachable; the caller stops sending this batch.

        """
        start = time.perf_counter()
        try:
            text = self._complete(build_messages(item), timeout_s)
        except Exception as exc:  # noqa: BLE001 - any provider failure becomes a fallback
            error = f"{self.name}: {describe_error(exc)}"
            if self._is_outage(exc):
                raise _Outage(error) from exc
            return self._fallback(item, error, start)
        try:
            reason, actions, confidence = validate_answer(extract_json_object(text), item)
            return Explanation(
                tx_id=item.tx_id,
                reason=reason,
                actions=actions,
                confidence=confidence,
                provider=self.name,
                latency_ms=_elapsed_ms(start),
            )
        except (ValueError, RecursionError) as exc:
            snippet = _shorten(text or "", 80)
            return self._fallback(item, f"{self.name}: unusable answer: {exc} [{snippet}]", start)

    def _fallback(self, item: ExplainItem, error: str, start: float) -> Explanation:
        logger.warning("explanation of %s fell back to the template: %s", item.tx_id, error)
        explanation = fallback_explanations([item], error)[0]
        explanation.latency_ms = _elapsed_ms(start)
        return explanation

    def explain(self, items: Sequence[ExplainItem]) -> list[Explanation]:
        """One explanation per item, in the same order; never raises for a provider failure."""
        started = time.perf_counter()
        out: list[Explanation] = []
        for index, item in enumerate(items):
            timeout_s = self.timeout_s
            if self.deadline_s is not None:
                remaining = self.deadline_s - (time.perf_counter() - started)
                if remaining <= 0.05:
                    error = f"{self.name}: batch time budget of {self.deadline_s:g} s used up"
                    out += fallback_explanations(items[index:], error)
                    break
                timeout_s = min(timeout_s, remaining)
            try:
                out.append(self._explain_one(item, timeout_s))
            except _Outage as outage:
                logger.warning("%s; the rest of the batch uses the template", outage.error)
                out += fallback_explanations(items[index:], outage.error)
                break
        return out


class _Outage(Exception):
    """The provider cannot answer at all (unreachable, refused credentials, unknown model)."""

    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error


class OpenAICompatibleProvider(_ChatProvider):
    """Explanations from an OpenAI-compatible chat-completions endpoint, one call per item.

    Works with OpenAI and with local servers such as llama.cpp's. One SDK client per provider,
    reused for every call; no retries, so a call takes at most ``timeout_s``.

    Args:
        base_url: the endpoint, e.g. ``http://127.0.0.1:8080/v1``; None for OpenAI's own.
        model: the model name the endpoint serves.
        api_key: the key; local servers ignore it, so None sends a placeholder.
        timeout_s: the most one call may take.
        deadline_s: the most one batch may take (None: no limit).

    """

    def __init__(
        self,
        base_url: str | None,
        model: str,
        api_key: str | None = None,
        timeout_s: float = 20.0,
        *,
        deadline_s: float | None = None,
    ) -> None:
        super().__init__(timeout_s, deadline_s)
        from openai import OpenAI

        self.model = model
        self.name = f"openai:{model}"
        self.base_url = base_url or "https://api.openai.com/v1"
        self._client = OpenAI(
            base_url=self.base_url,
            api_key=api_key or "no-key-for-local-servers",
            timeout=timeout_s,
            max_retries=0,
        )

    def _complete(self, messages: list[dict[str, str]], timeout_s: float) -> str | None:
        response = self._client.chat.completions.create(
            model=self.model,
            messages=messages,  # type: ignore[arg-type]
            temperature=0.0,
            max_tokens=MAX_ANSWER_TOKENS,
            timeout=timeout_s,
        )
        if not response.choices:
            return None
        return response.choices[0].message.content

    def _is_outage(self, exc: Exception) -> bool:
        import openai

        return isinstance(
            exc,
            openai.APIConnectionError  # includes timeouts
            | openai.AuthenticationError
            | openai.PermissionDeniedError
            | openai.NotFoundError,
        )

    def close(self) -> None:
        """Close the SDK client's connections."""
        self._client.close()


class BedrockProvider(_ChatProvider):
    """Explanations from Amazon Bedrock's ``converse`` API, one call per item, one boto3 client.

    Args:
        model_id: the Bedrock model id.
        region: the AWS region.
        endpoint_url: another endpoint than AWS's (None: the real one).
        timeout_s: the most one call may take (connect and read).
        deadline_s: the most one batch may take (None: no limit).
        aws_access_key_id: a key; None uses boto3's usual credential chain.
        aws_secret_access_key: the key's secret.

    """

    def __init__(
        self,
        model_id: str,
        region: str,
        endpoint_url: str | None = None,
        *,
        timeout_s: float = 20.0,
        deadline_s: float | None = None,
        aws_access_key_id: str | None = None,
        aws_secret_access_key: str | None = None,
    ) -> None:
        super().__init__(timeout_s, deadline_s)
        import boto3
        from botocore.config import Config

        self.model_id = model_id
        self.name = f"bedrock:{model_id}"
        kwargs: dict[str, Any] = {"region_name": region}
        if endpoint_url:
            kwargs["endpoint_url"] = endpoint_url
        if aws_access_key_id and aws_secret_access_key:
            kwargs["aws_access_key_id"] = aws_access_key_id
            kwargs["aws_secret_access_key"] = aws_secret_access_key
        config = Config(
            connect_timeout=timeout_s, read_timeout=timeout_s, retries={"max_attempts": 1}
        )
        self._client = boto3.client("bedrock-runtime", config=config, **kwargs)

    def _complete(self, messages: list[dict[str, str]], timeout_s: float) -> str | None:
        system = [{"text": m["content"]} for m in messages if m["role"] == "system"]
        chat = [
            {"role": m["role"], "content": [{"text": m["content"]}]}
            for m in messages
            if m["role"] != "system"
        ]
        response = self._client.converse(
            modelId=self.model_id,
            system=system,
            messages=chat,
            inferenceConfig={"maxTokens": MAX_ANSWER_TOKENS, "temperature": 0.0},
        )
        blocks = response.get("output", {}).get("message", {}).get("content", [])
        texts = [block["text"] for block in blocks if isinstance(block.get("text"), str)]
        return "".join(texts) or None

    def _is_outage(self, exc: Exception) -> bool:
        from botocore.exceptions import BotoCoreError, ClientError

        if isinstance(exc, BotoCoreError):  # connection, timeout, credentials
            return True
        if isinstance(exc, ClientError):
            code = exc.response.get("Error", {}).get("Code", "")
            return code in {
                "AccessDeniedException",
                "UnrecognizedClientException",
                "ResourceNotFoundException",
                "ExpiredTokenException",
            }
        return False

    def close(self) -> None:
        """Close the boto3 client's connections."""
        self._client.close()


def make_provider(settings: Settings) -> Provider:
    """Build the provider that ``settings.llm.provider`` names, configured from the settings.

    LLM providers get ``timeout_s`` per call and :data:`SERVICE_BUDGET_FRACTION` of it per
    batch, so that the explanation service answers before the stream's client gives up.

    Raises:
        ConfigError: the provider is OpenAI's own endpoint and no ``OPENAI_API_KEY`` is set.

    """
    llm = settings.llm
    budget = llm.timeout_s * SERVICE_BUDGET_FRACTION
    if llm.provider == "openai":
        api_key = settings.secret("OPENAI_API_KEY")
        if not llm.openai_base_url and not api_key:
            raise ConfigError(
                "llm.provider is openai with OpenAI's own endpoint but OPENAI_API_KEY is not "
                "set; set it, or set llm.openai_base_url to a local server"
            )
        return OpenAICompatibleProvider(
            llm.openai_base_url, llm.openai_model, api_key, llm.timeout_s, deadline_s=budget
        )
    if llm.provider == "bedrock":
        key_id = settings.secret("AWS_ACCESS_KEY_ID")
        secret = settings.secret("AWS_SECRET_ACCESS_KEY")
        if settings.mode == "local":  # moto's placeholders, as fraudkit.aws.client does
            from fraudkit.aws import LOCAL_CREDENTIAL

            key_id, secret = key_id or LOCAL_CREDENTIAL, secret or LOCAL_CREDENTIAL
        return BedrockProvider(
            llm.bedrock_model_id,
            settings.aws.region,
            settings.aws.endpoint_url,
            timeout_s=llm.timeout_s,
            deadline_s=budget,
            aws_access_key_id=key_id,
            aws_secret_access_key=secret,
        )
    return TemplateProvider()


# --------------------------------------------------------------------------------------------
# The stream's client of the explanation service
# --------------------------------------------------------------------------------------------


class ExplanationClient:
    """The stream's client of the explanation service: one request per micro-batch.

    Posts the batch to ``{url}/explain`` over one reused ``httpx.Client``. When the service is
    down, slow, or answers wrongly, the items get the template's explanation locally with
    ``fallback=True`` and the cause in ``error``; the service is then skipped for
    ``cooldown_s`` so that a dead service does not cost a timeout on every batch.

    Use as a context manager, or call :meth:`close`.

    Args:
        url: the service's base URL, e.g. ``http://127.0.0.1:18000``.
        timeout_s: the most one request may take.
        cooldown_s: how long to skip the service after a failure (0: never skip).

    """

    def __init__(self, url: str, timeout_s: float = 20.0, *, cooldown_s: float = 15.0) -> None:
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self.cooldown_s = cooldown_s
        self._http = httpx.Client(base_url=self.url, timeout=timeout_s)
        self._skip_until = 0.0
        self._last_error: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings, **kwargs: Any) -> ExplanationClient:
        """Make a client of ``settings.llm.url``, or of the embedded service's port if unset."""
        url = settings.llm.url or f"http://{settings.services.host}:{settings.services.llm_port}"
        return cls(url, settings.llm.timeout_s, **kwargs)

    def explain(self, items: Sequence[ExplainItem]) -> list[Explanation]:
        """One explanation per item, in the same order; never raises for a service failure."""
        out: list[Explanation] = []
        for begin in range(0, len(items), MAX_BATCH):
            out += self._explain_chunk(items[begin : begin + MAX_BATCH])
        return out

    def _explain_chunk(self, items: Sequence[ExplainItem]) -> list[Explanation]:
        if not items:
            return []
        now = time.monotonic()
        if now < self._skip_until:
            return fallback_explanations(
                items,
                f"explanation service skipped for {self._skip_until - now:.0f} s more "
                f"after: {self._last_error}",
            )
        try:
            explanations = self._post(items)
        except Exception as exc:  # noqa: BLE001 - the stream must never stop for this
            error = f"explanation service at {self.url} failed: {describe_error(exc)}"
            logger.warning("%s; using the template for %d items", error, len(items))
            self._last_error = error
            self._skip_until = time.monotonic() + self.cooldown_s
            return fallback_explanations(items, error)
        self._skip_until = 0.0
        return explanations

    def _post(self, items: Sequence[ExplainItem]) -> list[Explanation]:
        body = {"items": [item.model_dump(mode="json") for item in items]}
        response = self._http.post("/explain", json=body)
        response.raise_for_status()
        try:
            explanations = ExplainResponse.model_validate_json(response.content).explanations
        except ValidationError as exc:
            raise ValueError(f"malformed answer: {exc.error_count()} validation errors") from exc
        if [e.tx_id for e in explanations] != [item.tx_id for item in items]:
            raise ValueError("the answer's tx_ids do not match the request's, in order")
        return explanations

    def close(self) -> None:
        """Close the HTTP connections."""
        self._http.close()

    def __enter__(self) -> ExplanationClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


__all__ = [
    "MAX_BATCH",
    "BedrockProvider",
    "Contribution",
    "ExplainItem",
    "ExplainRequest",
    "ExplainResponse",
    "Explanation",
    "ExplanationClient",
    "OpenAICompatibleProvider",
    "Provider",
    "TemplateProvider",
    "build_messages",
    "build_user_prompt",
    "extract_json_object",
    "fallback_explanations",
    "make_provider",
    "rule_actions",
    "rule_confidence",
    "template_reason",
    "validate_answer",
]
