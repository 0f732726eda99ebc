"""The `evaluate` section: what the baseline and candidate are evaluated on."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from medprune.config._base import _Strict

#: The documented instruction for visit-note generation (``evaluate.visit_notes.instruction``).
#: By default it comes AFTER the dialogue (``instruction_position: after``): with the
#: instruction first, SmolLM2-135M-Instruct continued the dialogue instead of writing a note
#: (ROUGE-1 0.03 on ACI-BENCH); with the transcript first and this instruction last it
#: summarized the visit in a short probe (benchmarks/results/clinical-tasks-smollm2-135m.md).
DEFAULT_NOTE_INSTRUCTION = (
    "Summarize the doctor-patient visit above as a clinical note. "
    "Use these sections, each heading on its own line in capitals: CHIEF COMPLAINT, "
    "HISTORY OF PRESENT ILLNESS, REVIEW OF SYSTEMS, PHYSICAL EXAMINATION, RESULTS, "
    "ASSESSMENT AND PLAN. Write only what was said in the visit."
)

MCQ_FORMATS = Literal["auto", "medprune", "medqa", "medmcqa", "pubmedqa"]

#: A data source name as data cards write it (``hpo+icd10cm``, ``wordnet-medical``,
#: ``pubmedqa``, ``user:my-notes``); see :mod:`medprune.data.cards`.
SOURCE_PATTERN = r"^[a-z0-9][a-z0-9+_.:-]{0,79}$"
_SOURCE_HELP = (
    "Where the file comes from (its data card's source, e.g. wordnet-medical, pubmedqa); default: the "
    "card beside the file (FILE.card.json), else user:<file stem>. A name that contradicts the card is an "
    "error. Used by the independence check against the recovery and calibration text."
)


class MCQSourceConfig(_Strict):
    """One more multiple-choice source, scored and reported on its own (``accuracy@NAME``)."""

    name: str = Field(
        pattern=r"^[a-z0-9][a-z0-9_-]{0,39}$",
        description="Short name; metrics are reported as METRIC@NAME (accuracy@pubmedqa, macro_f1@pubmedqa).",
    )
    data: str = Field(
        description="The file: JSONL in any mcq format, or PubMedQA's original ori_pqal.json."
    )
    format: MCQ_FORMATS = Field(
        default="auto", description="Format of the file; 'auto' detects it."
    )
    source: str | None = Field(default=None, pattern=SOURCE_PATTERN, description=_SOURCE_HELP)
    max_items: int | None = Field(default=None, ge=1, description="Use only the first N items.")
    medmcqa_cop_base: Literal[0, 1] = Field(
        default=0, description="MedMCQA 'cop' numbering (0: 0-3, 1: 1-4)."
    )


class VisitNotesConfig(_Strict):
    """Visit-note summarization: dialogue -> clinical note, greedy, scored against the
    reference note (ROUGE, section coverage, hallucination and omission rates)."""

    data: str = Field(
        description="ACI-BENCH {data: [{src, tgt, file}]} file, or JSONL {id, input, reference}."
    )
    format: Literal["auto", "aci", "jsonl"] = Field(
        default="auto", description="'auto' detects it from the file."
    )
    source: str | None = Field(default=None, pattern=SOURCE_PATTERN, description=_SOURCE_HELP)
    max_items: int | None = Field(default=None, ge=1, description="Use only the first N dialogues.")
    instruction: str = Field(
        default=DEFAULT_NOTE_INSTRUCTION,
        min_length=1,
        description="What the model is asked to do (about the visit 'above' with the default position).",
    )
    instruction_position: Literal["after", "before"] = Field(
        default="after",
        description="'after': 'Visit transcript:', the dialogue between triple quotes, a blank line, then "
        "the instruction; 'before': the instruction, a blank line, then the dialogue.",
    )
    speaker_labels: Literal["names", "as-is"] = Field(
        default="names",
        description="'names': turn tags such as '[doctor]' at the start of a line are written 'Doctor:' "
        "(small models continue a '[doctor]' / '[patient]' transcript instead of summarizing it); "
        "'as-is': the dialogue unchanged.",
    )
    prompt_style: Literal["chat", "plain"] = Field(
        default="chat",
        description="'chat': the instruction and dialogue as one user turn of the model's chat template "
        "(a model without one is refused); 'plain': the same text followed by 'CLINICAL NOTE:'.",
    )
    max_new_tokens: int = Field(
        default=384, ge=1, le=4096, description="Token budget of each generated note."
    )
    max_input_tokens: int = Field(
        default=2048,
        ge=32,
        description="Longest prompt (instruction + dialogue + template) in tokens.",
    )
    truncate: bool = Field(
        default=True,
        description="Cut over-long dialogues from the front (keeping the end of the visit) with a warning; "
        "false: an over-long dialogue is an error before any model work.",
    )
    batch_size: int = Field(default=4, ge=1, description="Dialogues generated together.")


def check_api_url(v: str) -> str:
    """``v`` if it is an https URL, or http on 127.0.0.1 / localhost (a test's fake);
    raises ValueError otherwise."""
    from urllib.parse import urlparse

    url = urlparse(v)
    loopback = url.hostname in ("127.0.0.1", "localhost", "::1")
    if url.scheme != "https" and not (url.scheme == "http" and loopback):
        raise ValueError(f"must be an https URL (http only on 127.0.0.1 / localhost), got {v!r}")
    return v


class JudgeConfig(_Strict):
    """Claude as an optional judge of generated visit notes (off by default). Sends the
    dialogues and notes to Anthropic's API, so it refuses unless ``allow_external`` is true
    and ``model`` is named. The API key comes from the environment or Secret Manager only."""

    enabled: bool = Field(default=False, description="Rate every generated visit note with Claude.")
    allow_external: bool = Field(
        default=False,
        description="Consent that dialogues and notes may leave this environment for Anthropic's API; "
        "the judge refuses to send anything without it.",
    )
    model: str | None = Field(
        default=None, description="Claude model id, e.g. claude-sonnet-4-5; required when enabled."
    )
    api_key_env: str = Field(
        default="ANTHROPIC_API_KEY",
        pattern=r"^[A-Z_][A-Z0-9_]*$",
        description="Environment variable holding the API key.",
    )
    auth_token_env: str | None = Field(
        default="ANTHROPIC_AUTH_TOKEN",
        pattern=r"^[A-Z_][A-Z0-9_]*$",
        description="Environment variable with a bearer token (gateways), used when api_key_env is unset.",
    )
    api_key_secret: str | None = Field(
        default=None,
        pattern=r"^projects/[^/]+/secrets/[^/]+/versions/[^/]+$",
        description="Secret Manager version holding the key (projects/P/secrets/S/versions/V), instead of the environment.",
    )
    base_url: str | None = Field(
        default=None,
        description="API base URL (default Anthropic's); https, or http only on 127.0.0.1 / localhost.",
    )
    secret_manager_endpoint: str | None = Field(
        default=None,
        description="Secret Manager API endpoint for api_key_secret (default Google's, over gRPC with the "
        "application default credentials). Set: the REST API at this endpoint, e.g. a regional "
        "https://secretmanager.REGION.rep.googleapis.com or a private one; http only on 127.0.0.1 / "
        "localhost, with anonymous credentials (tests' loopback fake). "
        "$MEDPRUNE_SECRET_MANAGER_ENDPOINT also sets it.",
    )
    max_items: int | None = Field(default=None, ge=1, description="Judge only the first N notes.")
    max_tokens: int = Field(
        default=1024, ge=64, le=8192, description="Token limit of each judge reply."
    )
    timeout_s: float = Field(default=60.0, gt=0, le=600, description="Timeout of one request.")
    max_retries: int = Field(
        default=4, ge=0, le=10, description="Retries of one request on 429, 5xx, timeout."
    )
    backoff_s: float = Field(
        default=2.0, ge=0, description="First retry wait; doubles each retry (Retry-After wins)."
    )
    max_backoff_s: float = Field(
        default=30.0, ge=0, description="Longest single wait between retries."
    )
    max_total_seconds: float = Field(
        default=900.0, gt=0, description="Wall-clock budget of the whole judging."
    )
    max_total_tokens: int = Field(
        default=2_000_000, ge=1, description="Input + output token budget of the whole judging."
    )

    @field_validator("base_url", "secret_manager_endpoint")
    @classmethod
    def _safe_url(cls, v: str | None) -> str | None:
        return None if v is None else check_api_url(v)

    @model_validator(mode="after")
    def _consent_and_model(self) -> JudgeConfig:
        if self.enabled and not self.allow_external:
            raise ValueError(
                "evaluate.judge.enabled sends dialogues and notes to Anthropic's API: set "
                "evaluate.judge.allow_external: true to allow it, or disable the judge"
            )
        if self.enabled and not (self.model and self.model.strip()):
            raise ValueError("evaluate.judge.model: name the Claude model the judge uses")
        return self


class EvaluateConfig(_Strict):
    mcq: str | None = Field(
        default=None,
        description="JSONL of multiple-choice items: ours {question, options, answer, category}, "
        "MedQA {question, options: {A: ..}, answer}, MedMCQA {opa..opd, cop} or PubMedQA "
        "{context, question, final_decision}.",
    )
    mcq_format: MCQ_FORMATS = Field(
        default="auto",
        description="Format of the mcq file; 'auto' detects it from the first record.",
    )
    mcq_source: str | None = Field(
        default=None, pattern=SOURCE_PATTERN, description="Of evaluate.mcq: " + _SOURCE_HELP
    )
    medmcqa_cop_base: Literal[0, 1] = Field(
        default=0,
        description="MedMCQA 'cop' numbering: 0 for 0-3 (Hugging Face copy), 1 for 1-4 (original).",
    )
    mcq_sources: list[MCQSourceConfig] = Field(
        default_factory=list,
        description="More multiple-choice sources (e.g. PubMedQA), each scored and reported on its own "
        "as METRIC@NAME, so the gate can rest on several independent sources.",
    )
    visit_notes: VisitNotesConfig | None = Field(
        default=None,
        description="Visit-note summarization (ACI-BENCH or JSONL dialogue/note pairs).",
    )
    judge: JudgeConfig = Field(
        default_factory=JudgeConfig,
        description="Optional Claude judge of the visit notes (off by default).",
    )
    perplexity: str | None = Field(default=None, description="JSONL of {text} for perplexity.")
    summarization: str | None = Field(
        default=None,
        description="JSONL of {input, reference} pairs: the model continues input as given (short answers), "
        "scored by ROUGE-L and exact match. Visit notes: evaluate.visit_notes.",
    )
    batch_size: int = Field(
        default=8, ge=1, description="Items (MCQ questions, texts, prompts) per forward pass."
    )
    max_items: int | None = Field(default=None, ge=1, description="Use only the first N MCQ items.")
    max_ppl_texts: int | None = Field(default=None, ge=1, description="Use only the first N texts.")
    max_generation_items: int | None = Field(
        default=None, ge=1, description="Use only the first N generation items."
    )
    seq_len: int = Field(
        default=512, ge=8, description="Max tokens per sequence (the perplexity window)."
    )
    ppl_stride: int | None = Field(
        default=None,
        ge=1,
        description="Tokens between perplexity windows; default half of seq_len; seq_len = disjoint windows.",
    )
    max_new_tokens: int = Field(
        default=64, ge=1, le=4096, description="Token limit for greedy generation."
    )
    latency_batch_size: int = Field(
        default=1, ge=1, description="Batch size of the latency measurement."
    )
    latency_seq_len: int = Field(
        default=128, ge=1, description="Sequence length of the latency measurement."
    )
    latency_repeats: int = Field(
        default=5, ge=1, description="Timed forward passes (after one warm-up) for latency p50/p95."
    )
    num_threads: int | None = Field(
        default=None,
        ge=1,
        description="torch CPU threads while evaluating; default torch's choice.",
    )

    @field_validator("ppl_stride")
    @classmethod
    def _stride_in_window(cls, v: int | None, info) -> int | None:
        seq_len = info.data.get("seq_len")
        if v is not None and seq_len is not None and v > seq_len:
            raise ValueError(f"must be <= evaluate.seq_len ({seq_len}), got {v}")
        return v

    @model_validator(mode="after")
    def _something_to_evaluate(self) -> EvaluateConfig:
        if (
            self.mcq is None
            and self.perplexity is None
            and self.summarization is None
            and not self.mcq_sources
            and self.visit_notes is None
        ):
            raise ValueError(
                "set at least one of evaluate.mcq, evaluate.mcq_sources, evaluate.visit_notes, "
                "evaluate.perplexity or evaluate.summarization"
            )
        if self.judge.enabled and self.visit_notes is None:
            raise ValueError(
                "evaluate.judge.enabled: the judge rates visit notes; set evaluate.visit_notes"
            )
        names = [s.name for s in self.mcq_sources]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"evaluate.mcq_sources: duplicate names {dup}")
        if "mcq" in names:
            raise ValueError("evaluate.mcq_sources: the name 'mcq' is taken by evaluate.mcq")
        return self
