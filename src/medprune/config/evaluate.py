"""The `evaluate` section: what the baseline and candidate are evaluated on."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from medprune.config._base import _Strict


class EvaluateConfig(_Strict):
    mcq: str | None = Field(
        default=None,
        description="JSONL of multiple-choice items: ours {question, options, answer, category}, "
        "MedQA {question, options: {A: ..}, answer}, MedMCQA {opa..opd, cop} or PubMedQA "
        "{context, question, final_decision}.",
    )
    mcq_format: Literal["auto", "medprune", "medqa", "medmcqa", "pubmedqa"] = Field(
        default="auto", description="Format of the mcq file; 'auto' detects it from the first record."
    )
    medmcqa_cop_base: Literal[0, 1] = Field(
        default=0, description="MedMCQA 'cop' numbering: 0 for 0-3 (Hugging Face copy), 1 for 1-4 (original)."
    )
    perplexity: str | None = Field(default=None, description="JSONL of {text} for perplexity.")
    summarization: str | None = Field(
        default=None, description="JSONL of {input, reference} pairs for greedy generation, scored by ROUGE-L and exact match."
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
        if self.mcq is None and self.perplexity is None and self.summarization is None:
            raise ValueError("set at least one of evaluate.mcq, evaluate.perplexity or evaluate.summarization")
        return self
