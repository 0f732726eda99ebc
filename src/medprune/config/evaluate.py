"""The `evaluate` section: what the baseline and candidate are evaluated on."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from medprune.config._base import _Strict

#: The documented instruction for visit-note generation (``evaluate.visit_notes.instruction``):
#: the dialogue follows it after a blank line, inside the model's chat template.
DEFAULT_NOTE_INSTRUCTION = (
    "You are a clinical scribe. Write the clinical note for the doctor-patient visit below. "
    "Use these sections, each heading on its own line in capitals: CHIEF COMPLAINT, "
    "HISTORY OF PRESENT ILLNESS, REVIEW OF SYSTEMS, PHYSICAL EXAMINATION, RESULTS, "
    "ASSESSMENT AND PLAN. Write only what was said in the visit: no facts, numbers or "
    "medications that the dialogue does not contain."
)

MCQ_FORMATS = Literal["auto", "medprune", "medqa", "medmcqa", "pubmedqa"]


class MCQSourceConfig(_Strict):
    """One more multiple-choice source, scored and reported on its own (``accuracy@NAME``)."""

    name: str = Field(
        pattern=r"^[a-z0-9][a-z0-9_-]{0,39}$",
        description="Short name; metrics are reported as METRIC@NAME (accuracy@pubmedqa, macro_f1@pubmedqa).",
    )
    data: str = Field(description="The file: JSONL in any mcq format, or PubMedQA's original ori_pqal.json.")
    format: MCQ_FORMATS = Field(default="auto", description="Format of the file; 'auto' detects it.")
    max_items: int | None = Field(default=None, ge=1, description="Use only the first N items.")
    medmcqa_cop_base: Literal[0, 1] = Field(default=0, description="MedMCQA 'cop' numbering (0: 0-3, 1: 1-4).")


class VisitNotesConfig(_Strict):
    """Visit-note summarization: dialogue -> clinical note, greedy, scored against the
    reference note (ROUGE, section coverage, hallucination and omission rates)."""

    data: str = Field(description="ACI-BENCH {data: [{src, tgt, file}]} file, or JSONL {id, input, reference}.")
    format: Literal["auto", "aci", "jsonl"] = Field(default="auto", description="'auto' detects it from the file.")
    max_items: int | None = Field(default=None, ge=1, description="Use only the first N dialogues.")
    instruction: str = Field(
        default=DEFAULT_NOTE_INSTRUCTION, min_length=1, description="What the model is asked to do; the dialogue follows it."
    )
    prompt_style: Literal["chat", "plain"] = Field(
        default="chat",
        description="'chat': the instruction and dialogue as one user turn of the model's chat template "
        "(a model without one is refused); 'plain': instruction, dialogue and 'CLINICAL NOTE:' as text.",
    )
    max_new_tokens: int = Field(default=384, ge=1, le=4096, description="Token budget of each generated note.")
    max_input_tokens: int = Field(
        default=2048, ge=32, description="Longest prompt (instruction + dialogue + template) in tokens."
    )
    truncate: bool = Field(
        default=True,
        description="Cut over-long dialogues from the front (keeping the end of the visit) with a warning; "
        "false: an over-long dialogue is an error before any model work.",
    )
    batch_size: int = Field(default=4, ge=1, description="Dialogues generated together.")


class EvaluateConfig(_Strict):
    mcq: str | None = Field(
        default=None,
        description="JSONL of multiple-choice items: ours {question, options, answer, category}, "
        "MedQA {question, options: {A: ..}, answer}, MedMCQA {opa..opd, cop} or PubMedQA "
        "{context, question, final_decision}.",
    )
    mcq_format: MCQ_FORMATS = Field(
        default="auto", description="Format of the mcq file; 'auto' detects it from the first record."
    )
    medmcqa_cop_base: Literal[0, 1] = Field(
        default=0, description="MedMCQA 'cop' numbering: 0 for 0-3 (Hugging Face copy), 1 for 1-4 (original)."
    )
    mcq_sources: list[MCQSourceConfig] = Field(
        default_factory=list,
        description="More multiple-choice sources (e.g. PubMedQA), each scored and reported on its own "
        "as METRIC@NAME, so the gate can rest on several independent sources.",
    )
    visit_notes: VisitNotesConfig | None = Field(
        default=None, description="Visit-note summarization (ACI-BENCH or JSONL dialogue/note pairs)."
    )
    perplexity: str | None = Field(default=None, description="JSONL of {text} for perplexity.")
    summarization: str | None = Field(
        default=None,
        description="JSONL of {input, reference} pairs: the model continues input as given (short answers), "
        "scored by ROUGE-L and exact match. Visit notes: evaluate.visit_notes.",
    )
    batch_size: int = Field(default=8, ge=1, description="Items (MCQ questions, texts, prompts) per forward pass.")
    max_items: int | None = Field(default=None, ge=1, description="Use only the first N MCQ items.")
    max_ppl_texts: int | None = Field(default=None, ge=1, description="Use only the first N texts.")
    max_generation_items: int | None = Field(default=None, ge=1, description="Use only the first N generation items.")
    seq_len: int = Field(default=512, ge=8, description="Max tokens per sequence (the perplexity window).")
    ppl_stride: int | None = Field(
        default=None, ge=1, description="Tokens between perplexity windows; default half of seq_len; seq_len = disjoint windows."
    )
    max_new_tokens: int = Field(default=64, ge=1, le=4096, description="Token limit for greedy generation.")
    latency_batch_size: int = Field(default=1, ge=1, description="Batch size of the latency measurement.")
    latency_seq_len: int = Field(default=128, ge=1, description="Sequence length of the latency measurement.")
    latency_repeats: int = Field(default=5, ge=1, description="Timed forward passes (after one warm-up) for latency p50/p95.")
    num_threads: int | None = Field(default=None, ge=1, description="torch CPU threads while evaluating; default torch's choice.")

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
        names = [s.name for s in self.mcq_sources]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"evaluate.mcq_sources: duplicate names {dup}")
        if "mcq" in names:
            raise ValueError("evaluate.mcq_sources: the name 'mcq' is taken by evaluate.mcq")
        return self
