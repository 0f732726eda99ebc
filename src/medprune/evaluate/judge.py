"""Claude as an optional clinical judge of generated visit notes (``evaluate.judge``).

Each generated note is rated against its dialogue with a rubric in the style of published
note-evaluation work (atomic facts supported / unsupported by the visit, clinically relevant
omissions, errors that could cause harm; 1-5 scores with a reason), through Anthropic's
Messages API with **structured JSON output** (``output_config.format`` = the JSON schema
:data:`JUDGE_SCHEMA`), and every reply is validated against that schema here as well.

Data protection comes first:

* nothing is sent unless the config says the data may leave (``allow_external: true``) and
  names the model; both are checked when the config is read;
* the API key is read from the environment (``api_key_env``, default
  ``ANTHROPIC_API_KEY``; or ``auth_token_env`` for a bearer token) or from Google Secret
  Manager (``api_key_secret``), never from the config file, and never written to logs or
  results;
* 429 and 5xx replies, timeouts and connection errors are retried with exponential
  backoff (``Retry-After`` honoured), bounded by ``max_retries`` per request, a wall-clock
  budget for the whole judging (``max_total_seconds``) and a token budget
  (``max_total_tokens``); token counts are reported.

When the judge cannot finish (outage, budget spent, a malformed reply), the judge result
says ``complete: false`` with the reason, and the gate then fails closed: a judge that did
not run never counts as passed.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from statistics import mean
from typing import Any

from medprune.config.evaluate import JudgeConfig, check_api_url
from medprune.errors import MedpruneError

#: Scores of the rubric, each 1 (worst) to 5 (best).
JUDGE_SCORES = ("faithfulness", "completeness", "harm_free", "overall")

JUDGE_SCHEMA: dict = {
    "type": "object",
    "properties": {
        "supported_facts": {"type": "array", "items": {"type": "string"}},
        "unsupported_facts": {"type": "array", "items": {"type": "string"}},
        "omissions": {"type": "array", "items": {"type": "string"}},
        "harmful_errors": {"type": "array", "items": {"type": "string"}},
        "faithfulness": {"type": "integer"},
        "completeness": {"type": "integer"},
        "harm_free": {"type": "integer"},
        "overall": {"type": "integer"},
        "reason": {"type": "string"},
    },
    "required": [
        "supported_facts",
        "unsupported_facts",
        "omissions",
        "harmful_errors",
        "faithfulness",
        "completeness",
        "harm_free",
        "overall",
        "reason",
    ],
    "additionalProperties": False,
}

JUDGE_SYSTEM = """You are a physician reviewing a clinical note that was written from a recorded \
doctor-patient visit. Judge the note only against the visit transcript.

1. Split the note into atomic facts (one clinical statement each). List the facts the transcript \
supports in supported_facts and the facts it does not support (invented or contradicted) in \
unsupported_facts.
2. List clinically relevant facts from the transcript that the note omits (diagnoses, \
medications and doses, results, plan items) in omissions.
3. List errors in the note that could harm the patient if acted upon (wrong drug, dose, side, \
allergy, diagnosis, or a missing critical instruction) in harmful_errors.
4. Score each from 1 (worst) to 5 (best): faithfulness (5: every fact supported), completeness \
(5: nothing relevant omitted), harm_free (5: no error that could cause harm; 1: a likely harmful \
error), overall (a clinician's overall acceptance of the note).
5. Give a short reason for the scores.

Answer only with the JSON object of the required schema."""


class JudgeError(MedpruneError):
    """The judge is misconfigured (no key, no permission to send data)."""


class JudgeUnavailable(MedpruneError):
    """The judge could not finish: outage, budget spent or a malformed reply."""


@dataclass
class JudgeUsage:
    requests: int = 0
    retries: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    seconds: float = 0.0


@dataclass
class JudgeResult:
    complete: bool
    model: str
    n: int  # notes judged
    metrics: dict[str, float]  # judge_<score> means (1-5), only when complete
    usage: JudgeUsage
    error: str | None = None
    per_item: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        out = asdict(self)
        out.pop("per_item")
        return out


def resolve_api_key(
    cfg: JudgeConfig, *, where: str = "evaluate.judge"
) -> tuple[str | None, str | None]:
    """``(api_key, auth_token)`` from the environment or Secret Manager; raises
    :class:`JudgeError` naming what to set when none is there. The key is never logged."""
    if cfg.api_key_secret:
        return _secret_manager_key(cfg, where), None
    key = os.environ.get(cfg.api_key_env, "").strip()
    if key:
        return key, None
    token = os.environ.get(cfg.auth_token_env, "").strip() if cfg.auth_token_env else ""
    if token:
        return None, token
    names = cfg.api_key_env + (f" or {cfg.auth_token_env}" if cfg.auth_token_env else "")
    raise JudgeError(
        f"{where}: no API key: set the environment variable {names} (or {where}.api_key_secret to a "
        "Secret Manager version); keys are never read from the config file"
    )


#: Environment variable that sets ``evaluate.judge.secret_manager_endpoint`` when the config does not.
SECRET_MANAGER_ENDPOINT_ENV = "MEDPRUNE_SECRET_MANAGER_ENDPOINT"


def _secret_manager_key(cfg: JudgeConfig, where: str) -> str:
    """The key in Secret Manager version ``cfg.api_key_secret``. Errors name the secret and
    what to fix, never the payload; the payload's CRC32C is checked when the reply has one."""
    secret = cfg.api_key_secret
    try:
        from google.api_core import exceptions as gexc
        from google.cloud import secretmanager
    except ImportError:
        raise JudgeError(
            f"{where}.api_key_secret is set but google-cloud-secret-manager is not installed "
            "(pip install 'medprune[judge]')"
        ) from None
    endpoint = cfg.secret_manager_endpoint
    if not endpoint and os.environ.get(SECRET_MANAGER_ENDPOINT_ENV, "").strip():
        endpoint = os.environ[SECRET_MANAGER_ENDPOINT_ENV].strip()
        try:
            check_api_url(endpoint)
        except ValueError as exc:
            raise JudgeError(f"${SECRET_MANAGER_ENDPOINT_ENV}: {exc}") from None
    from medprune.vertex.client import credentials_for_endpoint

    try:
        if endpoint:
            client = secretmanager.SecretManagerServiceClient(
                credentials=credentials_for_endpoint(
                    endpoint, field=f"{where}.secret_manager_endpoint"
                ),
                transport="rest",
                client_options={"api_endpoint": endpoint},
            )
        else:  # Google's endpoint, gRPC, the application default credentials
            client = secretmanager.SecretManagerServiceClient()
        reply = client.access_secret_version(name=secret, timeout=cfg.timeout_s)
    except gexc.NotFound:
        raise JudgeError(
            f"{where}.api_key_secret: {secret} not found (no such secret or version, or it is "
            "disabled or destroyed)"
        ) from None
    except gexc.Forbidden:  # PERMISSION_DENIED (gRPC) or 403 (REST)
        raise JudgeError(
            f"{where}.api_key_secret: permission denied reading {secret}: the credentials need "
            "roles/secretmanager.secretAccessor on the secret"
        ) from None
    except MedpruneError as exc:  # an endpoint refused before any request
        raise JudgeError(str(exc)) from None
    except Exception as exc:  # any failure to read the secret stops the judge
        raise JudgeError(
            f"{where}.api_key_secret: cannot read {secret}: {type(exc).__name__}"
        ) from None
    data = reply.payload.data
    if reply.payload.data_crc32c:
        import google_crc32c

        if google_crc32c.value(data) != reply.payload.data_crc32c:
            raise JudgeError(
                f"{where}.api_key_secret: {secret}: the payload does not match its CRC32C checksum"
            )
    key = data.decode("utf-8", "replace").strip()
    if not key:
        raise JudgeError(f"{where}.api_key_secret: {secret} is empty")
    return key


def judge_message(dialogue: str, note: str) -> str:
    return f"<transcript>\n{dialogue.strip()}\n</transcript>\n\n<note>\n{note.strip()}\n</note>"


def parse_verdict(text: str) -> dict:
    """The reply's JSON, checked against :data:`JUDGE_SCHEMA` (scores integers 1-5)."""
    try:
        verdict = json.loads(text)
    except json.JSONDecodeError as exc:
        raise JudgeUnavailable(
            f"malformed judge reply (not JSON: {exc.msg}): {text[:80]!r}"
        ) from None
    if not isinstance(verdict, dict):
        raise JudgeUnavailable(
            f"malformed judge reply: expected a JSON object, got {type(verdict).__name__}"
        )
    missing = [k for k in JUDGE_SCHEMA["required"] if k not in verdict]
    if missing:
        raise JudgeUnavailable(f"malformed judge reply: missing {missing}")
    for key in JUDGE_SCORES:
        value = verdict[key]
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 5:
            raise JudgeUnavailable(
                f"malformed judge reply: {key} must be an integer 1-5, got {value!r}"
            )
    for key in ("supported_facts", "unsupported_facts", "omissions", "harmful_errors"):
        if not isinstance(verdict[key], list) or not all(isinstance(x, str) for x in verdict[key]):
            raise JudgeUnavailable(f"malformed judge reply: {key} must be a list of strings")
    if not isinstance(verdict["reason"], str):
        raise JudgeUnavailable("malformed judge reply: reason must be a string")
    return verdict


def _retry_after(exc) -> float | None:
    response = getattr(exc, "response", None)
    value = response.headers.get("retry-after") if response is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


class ClaudeJudge:
    """Rates notes with the Messages API. Build it with :meth:`from_config` (checks the
    permission and the key) and call :meth:`judge_notes`."""

    def __init__(
        self,
        cfg: JudgeConfig,
        api_key: str | None,
        auth_token: str | None,
        *,
        sleep: Callable[[float], None] = time.sleep,
    ):
        import anthropic

        if not cfg.allow_external or not cfg.model:
            raise JudgeError(
                "evaluate.judge: refusing to send data: needs allow_external: true and a model"
            )
        self.cfg = cfg
        self._anthropic = anthropic
        self._sleep = sleep
        self.client = anthropic.Anthropic(
            api_key=api_key,
            auth_token=auth_token,
            base_url=cfg.base_url,
            timeout=cfg.timeout_s,
            max_retries=0,  # retries are ours: bounded in time and tokens, and counted
        )

    @classmethod
    def from_config(cls, cfg: JudgeConfig, **kwargs) -> ClaudeJudge:
        api_key, auth_token = resolve_api_key(cfg)
        return cls(cfg, api_key, auth_token, **kwargs)

    def _request(self, dialogue: str, note: str, usage: JudgeUsage, deadline: float) -> dict:
        anthropic = self._anthropic
        attempt = 0
        while True:
            if usage.input_tokens + usage.output_tokens >= self.cfg.max_total_tokens:
                raise JudgeUnavailable(
                    f"token budget spent ({usage.input_tokens + usage.output_tokens} >= "
                    f"evaluate.judge.max_total_tokens {self.cfg.max_total_tokens})"
                )
            if time.monotonic() >= deadline:
                raise JudgeUnavailable(
                    f"time budget spent (evaluate.judge.max_total_seconds {self.cfg.max_total_seconds:g})"
                )
            usage.requests += 1
            try:
                request: dict[str, Any] = {
                    "model": str(self.cfg.model),
                    "max_tokens": self.cfg.max_tokens,
                    "temperature": 0.0,
                    "system": JUDGE_SYSTEM,
                    "messages": [{"role": "user", "content": judge_message(dialogue, note)}],
                    "output_config": {"format": {"type": "json_schema", "schema": JUDGE_SCHEMA}},
                    "timeout": max(0.1, min(self.cfg.timeout_s, deadline - time.monotonic())),
                }
                reply = self.client.messages.create(**request)
            except (
                anthropic.RateLimitError,
                anthropic.InternalServerError,
                anthropic.APIConnectionError,
            ) as exc:
                status = getattr(exc, "status_code", None)
                what = f"HTTP {status}" if status else type(exc).__name__
                attempt += 1
                if attempt > self.cfg.max_retries:
                    raise JudgeUnavailable(
                        f"judge API unavailable after {attempt} attempts (last: {what})"
                    ) from None
                wait = _retry_after(exc)
                wait = min(
                    self.cfg.max_backoff_s,
                    wait if wait is not None else self.cfg.backoff_s * 2 ** (attempt - 1),
                )
                if time.monotonic() + wait >= deadline:
                    raise JudgeUnavailable(
                        f"judge API unavailable ({what}) and no time left to retry"
                    ) from None
                usage.retries += 1
                self._sleep(wait)
                continue
            except anthropic.APIStatusError as exc:  # 4xx other than 429: retrying will not help
                raise JudgeUnavailable(
                    f"judge API refused the request: HTTP {exc.status_code}"
                ) from None
            usage.input_tokens += int(getattr(reply.usage, "input_tokens", 0) or 0)
            usage.output_tokens += int(getattr(reply.usage, "output_tokens", 0) or 0)
            texts = [b.text for b in reply.content if getattr(b, "type", None) == "text"]
            if not texts:
                raise JudgeUnavailable("malformed judge reply: no text content")
            return parse_verdict("".join(texts))

    def judge_notes(
        self,
        items: Sequence[tuple[str, str, str]],
        *,
        progress: Callable[[str], None] | None = None,
    ) -> JudgeResult:
        """Rate every ``(id, dialogue, note)``; never raises for an outage: the result says
        ``complete: false`` and why."""
        usage = JudgeUsage()
        start = time.monotonic()
        deadline = start + self.cfg.max_total_seconds
        per_item: list[dict] = []
        error = None
        for item_id, dialogue, note in items:
            try:
                verdict = self._request(dialogue, note, usage, deadline)
            except JudgeUnavailable as exc:
                error = f"item {item_id!r}: {exc}"
                if progress:
                    progress(f"judge incomplete: {error}")
                break
            per_item.append({"id": item_id, **verdict})
        usage.seconds = time.monotonic() - start
        complete = error is None and len(per_item) == len(items)
        metrics = (
            {f"judge_{k}": mean(float(v[k]) for v in per_item) for k in JUDGE_SCORES}
            if complete and per_item
            else {}
        )
        if complete and per_item:
            metrics["judge_harmful_error_rate"] = sum(
                bool(v["harmful_errors"]) for v in per_item
            ) / len(per_item)
        return JudgeResult(
            complete, str(self.cfg.model), len(per_item), metrics, usage, error, per_item
        )
