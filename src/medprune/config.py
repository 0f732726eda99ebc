"""The one typed configuration that describes a medprune run.

A run is described by a YAML file loaded into :class:`RunConfig`. Unknown keys and bad
values fail early with a :class:`~medprune.errors.ConfigError` that names the field::

    cfg = load_config("examples/local.yaml")
    cfg.prune.sparsity  # 0.5

The config that produced a model is saved next to it (``medprune_config.json``), so a
result always says how it was made.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from medprune.errors import ConfigError

_MODEL_URI = re.compile(r"^(gs://|vertex://|/|\.|~|[A-Za-z0-9_\-])")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelConfig(_Strict):
    source: str = Field(
        description="Where the dense model is: a local directory, gs://BUCKET/PATH, or "
        "vertex://projects/P/locations/L/models/ID@VERSION_OR_ALIAS."
    )
    name: str = Field(
        default="medprune-model",
        pattern=r"^[a-z0-9][a-z0-9\-_.]{0,62}$",
        description="Name of the model in the registry (lower case, digits, - _ .).",
    )
    dtype: Literal["float32", "bfloat16", "float16"] = Field(
        default="float32", description="Weights dtype for pruning and evaluation."
    )
    trust_remote_code: bool = Field(
        default=False, description="Allow custom modelling code shipped with the model. Off by default."
    )

    @field_validator("source")
    @classmethod
    def _source_not_empty(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must not be empty")
        return v


class CalibrationConfig(_Strict):
    data: str | None = Field(default=None, description="JSONL of {text} used to calibrate pruning.")
    num_samples: int = Field(default=64, ge=1, description="Number of calibration sequences.")
    seq_len: int = Field(default=256, ge=8, description="Tokens per calibration sequence.")
    batch_size: int = Field(
        default=8, ge=1, description="Calibration sequences per layer forward pass while pruning."
    )


class SparseGPTConfig(_Strict):
    blocksize: int = Field(default=128, ge=1, description="Columns updated together (lazy batch).")
    dampening: float = Field(
        default=0.01, gt=0, lt=1, description="Added to the Hessian diagonal, times its mean."
    )


class AllocationConfig(_Strict):
    kind: Literal["uniform", "owl"] = Field(
        default="uniform",
        description="'uniform': every layer gets prune.sparsity; 'owl': outlier-weighted layerwise "
        "sparsity (unstructured only), mean over layers = prune.sparsity.",
    )
    owl_threshold: float = Field(
        default=5.0, gt=0, description="OWL: a weight is an outlier if its Wanda score > this x mean."
    )
    owl_lambda: float = Field(
        default=0.08, ge=0, lt=0.5, description="OWL: layer sparsities span prune.sparsity +/- this."
    )


class StructuredConfig(_Strict):
    """Settings of the structured methods ``width`` and ``depth``.

    ``width``: unless explicit sizes are given, ``prune.sparsity`` is the fraction of all model
    parameters to remove. ``depth``: unless ``layers_to_remove`` is given, ``prune.sparsity``
    is the fraction of decoder layers to remove.
    """

    head_mode: Literal["query_heads", "kv_groups"] = Field(
        default="query_heads",
        description="GQA-aware head removal: 'query_heads' removes the same number of query "
        "heads in every key/value group; 'kv_groups' removes whole key/value groups.",
    )
    prune_attention: bool = Field(default=True, description="width: remove attention heads.")
    prune_mlp: bool = Field(default=True, description="width: remove MLP intermediate channels.")
    prune_hidden: bool = Field(
        default=False, description="width: also remove hidden (embedding) channels."
    )
    num_attention_heads: int | None = Field(default=None, ge=1, description="width: heads to keep.")
    num_key_value_heads: int | None = Field(
        default=None, ge=1, description="width: key/value heads to keep (kv_groups mode)."
    )
    intermediate_size: int | None = Field(default=None, ge=1, description="width: MLP size to keep.")
    hidden_size: int | None = Field(default=None, ge=1, description="width: hidden size to keep.")
    channel_multiple: int = Field(
        default=32, ge=1, description="width: kept MLP/hidden sizes are rounded to a multiple of this."
    )
    plan_search: bool = Field(
        default=True,
        description="width with prune.sparsity: try every allowed head count (the MLP size then "
        "fills the parameter target) and keep the split whose pruned layers best reproduce the "
        "dense layers' outputs on the calibration data; off: remove the same fraction of heads "
        "and MLP channels. Not used with explicit sizes or prune_hidden.",
    )
    layers_to_remove: list[int] | None = Field(
        default=None, description="depth: explicit decoder layer indices to remove (0-based)."
    )

    @field_validator("layers_to_remove")
    @classmethod
    def _unique_layers(cls, v: list[int] | None) -> list[int] | None:
        if v is not None and (len(set(v)) != len(v) or any(i < 0 for i in v)):
            raise ValueError(f"must be distinct non-negative layer indices, got {v}")
        return v


class PruneConfig(_Strict):
    method: str = Field(
        default="magnitude",
        description="Pruning method: magnitude, wanda, sparsegpt (unstructured or N:M), "
        "width, depth (structured).",
    )
    sparsity: float = Field(
        default=0.5, description="Target fraction of zero weights in the pruned layers, in [0, 1)."
    )
    pattern: str = Field(
        default="unstructured", description="'unstructured' or 'N:M' (for example '2:4')."
    )
    exclude: list[str] = Field(
        default_factory=lambda: ["lm_head", "embed_tokens"],
        description="Module-name substrings never pruned (embeddings and lm_head by default).",
    )
    calibration: CalibrationConfig = Field(default_factory=CalibrationConfig)
    options: dict[str, Any] = Field(
        default_factory=dict, description="Method-specific options (for example SparseGPT blocksize)."
    )
    sparsegpt: SparseGPTConfig = Field(default_factory=SparseGPTConfig)
    allocation: AllocationConfig = Field(default_factory=AllocationConfig)
    structured: StructuredConfig = Field(default_factory=StructuredConfig)

    @field_validator("sparsity")
    @classmethod
    def _sparsity_range(cls, v: float) -> float:
        if not 0.0 <= v < 1.0:
            raise ValueError(f"must be in [0, 1), got {v}")
        return v

    @field_validator("pattern")
    @classmethod
    def _pattern_form(cls, v: str) -> str:
        if v == "unstructured":
            return v
        m = re.fullmatch(r"(\d+):(\d+)", v)
        if not m:
            raise ValueError(f"must be 'unstructured' or 'N:M' like '2:4', got {v!r}")
        n, mm = int(m.group(1)), int(m.group(2))
        if not 0 < n < mm:
            raise ValueError(f"N:M needs 0 < N < M, got {v!r}")
        return v

    @model_validator(mode="after")
    def _combinations(self) -> PruneConfig:
        if self.allocation.kind == "owl":
            if self.pattern != "unstructured":
                raise ValueError(
                    f"prune.allocation.kind='owl' needs prune.pattern='unstructured', got {self.pattern!r}"
                )
            lam = self.allocation.owl_lambda
            if not (0.0 <= self.sparsity - lam and self.sparsity + lam < 1.0):
                raise ValueError(
                    f"prune.allocation.owl_lambda={lam} takes layer sparsities outside [0, 1) around "
                    f"prune.sparsity={self.sparsity}; allowed: lambda <= min(sparsity, 1 - sparsity)"
                )
        if self.method in ("width", "depth"):
            if self.pattern != "unstructured":
                raise ValueError(
                    f"prune.pattern={self.pattern!r} does not apply to structured method "
                    f"{self.method!r}; use 'unstructured'"
                )
            if self.allocation.kind != "uniform":
                raise ValueError(f"prune.allocation.kind must be 'uniform' for method {self.method!r}")
        return self

    @property
    def nm(self) -> tuple[int, int] | None:
        if self.pattern == "unstructured":
            return None
        n, m = self.pattern.split(":")
        return int(n), int(m)


class LoraConfig(_Strict):
    r: int = Field(default=16, ge=1, description="LoRA rank.")
    alpha: float = Field(default=32.0, gt=0, description="LoRA scaling numerator (scale = alpha / r).")
    dropout: float = Field(default=0.05, ge=0, lt=1, description="Dropout on the LoRA input, in [0, 1).")
    target_modules: list[str] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        description="Module-name suffixes that get LoRA adapters.",
    )

    @field_validator("target_modules")
    @classmethod
    def _targets_not_empty(cls, v: list[str]) -> list[str]:
        if not v or any(not t.strip() for t in v):
            raise ValueError("must list at least one non-empty module name")
        return v


class DistillConfig(_Strict):
    enabled: bool = Field(
        default=True, description="Distil from the dense model (the teacher) when one is given."
    )
    temperature: float = Field(default=2.0, gt=0, description="Softmax temperature of the KL term.")
    kl_weight: float = Field(default=1.0, ge=0, description="Weight of KL(teacher || student) on the logits.")
    ce_weight: float = Field(default=0.5, ge=0, description="Weight of cross-entropy on the data.")

    @model_validator(mode="after")
    def _some_loss(self) -> DistillConfig:
        if self.kl_weight == 0 and self.ce_weight == 0:
            raise ValueError("kl_weight and ce_weight are both 0: nothing to train on")
        return self


class CustomJobConfig(_Strict):
    enabled: bool = Field(
        default=False,
        description="Run recovery as its own Vertex AI custom job with the worker pools below "
        "(the local runner always runs it in process).",
    )
    machine_type: str = Field(default="a2-highgpu-1g", description="Compute Engine machine type.")
    accelerator_type: str | None = Field(
        default="NVIDIA_TESLA_A100", description="Vertex accelerator type, e.g. NVIDIA_H100_80GB; None for CPU."
    )
    accelerator_count: int = Field(default=1, ge=0, description="Accelerators per replica.")
    replica_count: int = Field(default=1, ge=1, description="Machines; more than 1 means multi-node.")
    boot_disk_size_gb: int = Field(default=200, ge=100, description="Boot disk per replica (GB).")
    spot: bool = Field(default=False, description="Use spot VMs (preemptible; recovery resumes).")
    service_account: str | None = Field(default=None, description="Run-as service account of the job.")
    launcher: Literal["accelerate", "python"] = Field(
        default="accelerate",
        description="'accelerate' runs `accelerate launch` with one process per accelerator and "
        "node; 'python' runs a single process.",
    )
    fsdp: bool = Field(
        default=False, description="Shard the model with FSDP2 (for models too large for one GPU); else DDP."
    )
    timeout_hours: float = Field(default=24.0, gt=0, description="Job timeout.")

    @field_validator("machine_type")
    @classmethod
    def _machine_type_form(cls, v: str) -> str:
        if not re.fullmatch(r"[a-z0-9][a-z0-9\-]+", v):
            raise ValueError(f"must look like 'a2-highgpu-8g', got {v!r}")
        return v

    @model_validator(mode="after")
    def _accelerator_pair(self) -> CustomJobConfig:
        if self.accelerator_type and self.accelerator_count == 0:
            raise ValueError("accelerator_count must be >= 1 when accelerator_type is set")
        return self


class RecoverConfig(_Strict):
    enabled: bool = Field(default=True, description="Run recovery fine-tuning after pruning.")
    data: str | None = Field(default=None, description="JSONL of {text} (or {prompt, response}) to train on; local or gs://.")
    steps: int = Field(default=20, ge=0, description="Optimizer steps.")
    lr: float = Field(default=1e-5, gt=0, description="Peak learning rate.")
    batch_size: int = Field(default=4, ge=1, description="Sequences per micro-batch per device.")
    seq_len: int = Field(default=128, ge=8, description="Tokens per training sequence.")
    weight_decay: float = Field(default=0.0, ge=0)
    max_grad_norm: float = Field(default=1.0, gt=0)
    mode: Literal["full", "lora"] = Field(
        default="full", description="'full' fine-tunes every weight; 'lora' trains adapters and merges them through the masks."
    )
    lora: LoraConfig = Field(default_factory=LoraConfig)
    distill: DistillConfig = Field(default_factory=DistillConfig)
    grad_accum: int = Field(default=1, ge=1, description="Micro-batches per optimizer step.")
    gradient_checkpointing: bool = Field(default=False, description="Recompute activations to save memory.")
    warmup_steps: int = Field(default=0, ge=0, description="Linear warm-up steps of the learning rate.")
    schedule: Literal["cosine", "linear", "constant"] = Field(
        default="cosine", description="Learning-rate decay after warm-up."
    )
    eval_every: int = Field(default=0, ge=0, description="Evaluate loss every N steps (0: never).")
    eval_data: str | None = Field(default=None, description="JSONL for evaluation loss (same format as data).")
    eval_fraction: float = Field(
        default=0.0, ge=0, lt=1, description="Hold out this share of the training examples for evaluation when eval_data is unset."
    )
    early_stopping_patience: int = Field(
        default=0, ge=0, description="Stop after this many evaluations without improvement (0: never)."
    )
    restore_best: bool = Field(
        default=True,
        description="With evaluation on (eval_every > 0), end with the weights of the step with the lowest "
        "eval loss rather than the last step's (a CPU copy of the trainable weights is kept, and saved "
        "in checkpoints so a resumed run keeps it too). false: keep the last step's weights.",
    )
    checkpoint_every: int = Field(default=0, ge=0, description="Save a resumable checkpoint every N steps (0: never).")
    checkpoint_dir: str | None = Field(
        default=None,
        description="Durable checkpoint directory (local, /gcs/..., or gs://B/P read through the /gcs/ mount). "
        "Default: a 'checkpoints' folder beside the output model.",
    )
    keep_checkpoints: int = Field(default=2, ge=1, description="Newest checkpoints kept; older ones are deleted.")
    resume: bool = Field(default=True, description="Resume from the newest checkpoint in checkpoint_dir.")
    data_format: Literal["auto", "text", "instruction"] = Field(
        default="auto", description="'text' ({text}, packed), 'instruction' ({prompt, response}), or 'auto' (from the first record)."
    )
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = Field(
        default="auto", description="'auto' is bf16 on a GPU and float32 on CPU."
    )
    log_every: int = Field(default=10, ge=1, description="Report loss and tokens/s every N steps.")
    max_minutes: float | None = Field(
        default=None, gt=0, description="Stop training after this many minutes (checked after each step); None: no limit."
    )
    budget_clock: Literal["wall", "cpu"] = Field(
        default="wall",
        description="What max_minutes counts: wall-clock time, or CPU time of this process "
        "(steady on a shared machine; on 2 cores, 10 CPU minutes is about 5 wall minutes).",
    )
    custom_job: CustomJobConfig = Field(default_factory=CustomJobConfig)

    @model_validator(mode="after")
    def _eval_settings(self) -> RecoverConfig:
        if self.early_stopping_patience and not self.eval_every:
            raise ValueError("early_stopping_patience needs eval_every > 0")
        if self.eval_every and self.eval_data is None and self.eval_fraction == 0:
            raise ValueError("eval_every needs recover.eval_data or recover.eval_fraction > 0")
        return self


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


#: Metrics the gate knows, and whether higher is better. ``accuracy_<category>`` metrics
#: exist too (see ``GateConfig.category_floors``).
GATE_METRICS: dict[str, bool] = {
    "accuracy": True,
    "accuracy_norm": True,
    "rouge_l": True,
    "exact_match": True,
    "tokens_per_s": True,
    "perplexity": False,
    "bits_per_byte": False,
    "latency_ms_p50": False,
    "latency_ms_p95": False,
    "size_bytes": False,
    "nonzero_params": False,
    "peak_memory_bytes": False,
}


def _check_metric_map(v: dict[str, float], field: str, *, direction: bool | None = None) -> dict[str, float]:
    for name, value in v.items():
        if name not in GATE_METRICS:
            raise ValueError(f"{field}: unknown metric {name!r}; known metrics are {sorted(GATE_METRICS)}")
        if direction is not None and GATE_METRICS[name] is not direction:
            other = "max_increase" if direction else "max_drop"
            raise ValueError(f"{field}: {name!r} is better when {'lower' if direction else 'higher'}; use gate.{other} for it")
        if value < 0:
            raise ValueError(f"{field}.{name}: must be >= 0, got {value}")
    return v


class NonInferiorityConfig(_Strict):
    margin: float = Field(
        gt=0, lt=1, description="Largest accuracy loss accepted as 'not worse' (0.05 = 5 points)."
    )
    confidence: float = Field(
        default=0.95, gt=0.5, lt=1, description="Two-sided confidence level of the interval for (candidate - baseline) accuracy."
    )
    method: Literal["bootstrap", "mcnemar"] = Field(
        default="bootstrap", description="Paired bootstrap (percentile) or exact McNemar (conditional Clopper-Pearson) interval."
    )
    n_resamples: int = Field(default=2000, ge=100, le=1_000_000, description="Bootstrap resamples.")
    seed: int = Field(default=0, ge=0, description="Bootstrap random seed (results are reproducible).")
    metric: Literal["acc", "acc_norm"] = Field(default="acc", description="Which per-item correctness to compare.")
    min_items: int = Field(
        default=30, ge=1, description="Fewer paired items than this fail the check: the interval would say little."
    )


class GateConfig(_Strict):
    min_accuracy: float | None = Field(default=None, ge=0, le=1, description="Candidate accuracy floor.")
    max_accuracy_drop: float | None = Field(
        default=None, ge=0, le=1, description="Largest allowed (baseline - candidate) accuracy."
    )
    max_perplexity_ratio: float | None = Field(
        default=None, gt=0, description="Largest allowed candidate / baseline perplexity."
    )
    floors: dict[str, float] = Field(
        default_factory=dict, description="Candidate metric >= value, e.g. {accuracy: 0.6, rouge_l: 0.3}."
    )
    ceilings: dict[str, float] = Field(
        default_factory=dict, description="Candidate metric <= value, e.g. {perplexity: 20, latency_ms_p95: 250}."
    )
    max_drop: dict[str, float] = Field(
        default_factory=dict, description="Largest allowed (baseline - candidate) for higher-is-better metrics, e.g. {rouge_l: 0.02}."
    )
    max_increase: dict[str, float] = Field(
        default_factory=dict, description="Largest allowed (candidate - baseline) for lower-is-better metrics, e.g. {perplexity: 1.5}."
    )
    category_floors: dict[str, float] = Field(
        default_factory=dict, description="Candidate accuracy floor per MCQ category, e.g. {dosing: 0.8}; '*' applies to every category."
    )
    critical_items: list[str] = Field(
        default_factory=list, description="MCQ item ids the candidate may not get wrong where the baseline got them right."
    )
    non_inferiority: NonInferiorityConfig | None = Field(
        default=None, description="Paired non-inferiority test of candidate vs baseline accuracy."
    )

    @field_validator("floors", "ceilings")
    @classmethod
    def _known_metrics(cls, v: dict[str, float], info) -> dict[str, float]:
        return _check_metric_map(v, f"gate.{info.field_name}")

    @field_validator("max_drop")
    @classmethod
    def _drop_metrics(cls, v: dict[str, float]) -> dict[str, float]:
        return _check_metric_map(v, "gate.max_drop", direction=True)

    @field_validator("max_increase")
    @classmethod
    def _increase_metrics(cls, v: dict[str, float]) -> dict[str, float]:
        return _check_metric_map(v, "gate.max_increase", direction=False)

    @field_validator("category_floors")
    @classmethod
    def _category_range(cls, v: dict[str, float]) -> dict[str, float]:
        for cat, value in v.items():
            if not 0 <= value <= 1:
                raise ValueError(f"gate.category_floors.{cat}: must be in [0, 1], got {value}")
        return v

    @field_validator("critical_items")
    @classmethod
    def _ids_unique(cls, v: list[str]) -> list[str]:
        dup = sorted({i for i in v if v.count(i) > 1})
        if dup:
            raise ValueError(f"gate.critical_items: duplicate ids {dup}")
        if any(not i.strip() for i in v):
            raise ValueError("gate.critical_items: ids must be non-empty")
        return v


class LocalRegistryConfig(_Strict):
    root: str = Field(default="registry", description="Directory of the local model registry.")


class RegistryConfig(_Strict):
    target: Literal["local", "vertex"] = Field(default="local")
    local: LocalRegistryConfig = Field(default_factory=LocalRegistryConfig)
    aliases: list[str] = Field(
        default_factory=lambda: ["candidate"], description="Aliases moved to the new version."
    )

    @field_validator("aliases")
    @classmethod
    def _alias_names(cls, v: list[str]) -> list[str]:
        for a in v:
            if not re.fullmatch(r"[a-z][a-z0-9\-_]{0,62}", a):
                raise ValueError(f"alias {a!r} must be lower case letters, digits, - or _")
        return v


class ResourceConfig(_Strict):
    cpu: str = Field(default="4", description="CPU limit for the task on Vertex, e.g. '8'.")
    memory: str = Field(default="16G", description="Memory limit for the task on Vertex, e.g. '32G'.")
    accelerator_type: str | None = Field(default=None, description="e.g. NVIDIA_L4; None for CPU.")
    accelerator_count: int = Field(default=1, ge=1)

    @field_validator("memory")
    @classmethod
    def _memory_form(cls, v: str) -> str:
        if not re.fullmatch(r"\d+(\.\d+)?[KMGT]i?", v):
            raise ValueError(f"must look like '16G' or '512Mi', got {v!r}")
        return v


def _default_resources() -> dict[str, ResourceConfig]:
    return {
        "load": ResourceConfig(cpu="4", memory="32G"),
        "prune": ResourceConfig(cpu="8", memory="64G", accelerator_type="NVIDIA_L4"),
        "recover": ResourceConfig(cpu="8", memory="64G", accelerator_type="NVIDIA_L4"),
        "evaluate": ResourceConfig(cpu="8", memory="32G", accelerator_type="NVIDIA_L4"),
        "gate": ResourceConfig(cpu="1", memory="4G"),
        "register": ResourceConfig(cpu="2", memory="16G"),
    }


STAGES = ("load", "prune", "recover", "evaluate", "gate", "register")


class PipelineConfig(_Strict):
    base_image: str = Field(
        default="python:3.11-slim",
        description="Container image holding medprune and kfp; every component runs in it.",
    )
    resources: dict[str, ResourceConfig] = Field(default_factory=_default_resources)

    @field_validator("resources")
    @classmethod
    def _known_stages(cls, v: dict[str, ResourceConfig]) -> dict[str, ResourceConfig]:
        unknown = set(v) - set(STAGES)
        if unknown:
            raise ValueError(f"unknown stage(s) {sorted(unknown)}; stages are {list(STAGES)}")
        merged = _default_resources()
        merged.update(v)
        return merged


_GCS_BUCKET_URI = re.compile(r"^gs://[a-z0-9][a-z0-9_.\-]{1,220}[a-z0-9](/.*)?$")
_LABEL = re.compile(r"^[a-z][a-z0-9_\-]{0,62}$")
_LABEL_VALUE = re.compile(r"^[a-z0-9_\-]{0,63}$")
DEFAULT_SERVING_IMAGE = "us-docker.pkg.dev/vertex-ai/vertex-vision-model-garden-dockers/pytorch-vllm-serve:latest"


class VertexConfig(_Strict):
    """Where and how medprune runs on Vertex AI and registers into its Model Registry.

    ``project``, ``location`` and ``staging_bucket`` may be left out and come from the
    environment (``GOOGLE_CLOUD_PROJECT``, ``GOOGLE_CLOUD_REGION``, ``MEDPRUNE_BUCKET``);
    see :meth:`resolved`.
    """

    project: str | None = Field(
        default=None, description="GCP project id; defaults to $GOOGLE_CLOUD_PROJECT."
    )
    location: str | None = Field(
        default=None, description="Vertex AI region, e.g. us-central1; defaults to $GOOGLE_CLOUD_REGION."
    )
    staging_bucket: str | None = Field(
        default=None,
        description="gs://BUCKET[/PREFIX] for model artifacts and pipeline runs; "
        "defaults to gs://$MEDPRUNE_BUCKET.",
    )
    pipeline_root: str | None = Field(
        default=None, description="gs:// root for pipeline run outputs; defaults to STAGING_BUCKET/pipeline_root."
    )
    service_account: str | None = Field(
        default=None, description="Run-as service account email for pipeline runs and schedules."
    )
    network: str | None = Field(
        default=None,
        description="VPC network to peer pipeline runs with: projects/NUMBER/global/networks/NAME.",
    )
    encryption_spec_key_name: str | None = Field(
        default=None,
        description="CMEK key for runs and registered models: "
        "projects/P/locations/L/keyRings/R/cryptoKeys/K.",
    )
    labels: dict[str, str] = Field(
        default_factory=dict, description="Labels put on pipeline runs, schedules and models."
    )
    enable_caching: bool | None = Field(
        default=None,
        description="Step caching for runs: true, false, or null to follow the compiled pipeline.",
    )
    experiment: str | None = Field(
        default=None, description="Vertex AI Experiment to associate submitted runs with."
    )
    serving_container_image_uri: str = Field(
        default=DEFAULT_SERVING_IMAGE,
        description="Serving container recorded with the registered model (a vLLM image by default).",
    )
    serving_container_args: list[str] = Field(
        default_factory=lambda: [
            "python", "-m", "vllm.entrypoints.api_server", "--host=0.0.0.0", "--port=8080",
            "--model={artifact_uri}",
        ],
        description="Serving container arguments; '{artifact_uri}' becomes the model's gs:// URI.",
    )
    serving_container_predict_route: str = Field(default="/generate", description="Predict route.")
    serving_container_health_route: str = Field(default="/ping", description="Health route.")
    serving_container_ports: list[int] = Field(
        default_factory=lambda: [8080], description="Ports the serving container listens on."
    )
    is_default_version: bool = Field(
        default=False,
        description="Make each newly registered version the model's default version.",
    )
    parent_model: str | None = Field(
        default=None,
        description="Model to add versions to (ID or projects/P/locations/L/models/ID). If unset, "
        "a model with display name model.name is looked up and used, else a new model is created.",
    )
    promotion_alias: str | None = Field(
        default=None,
        description="Alias (e.g. 'production') moved to the new version when the gate passes.",
    )
    api_endpoint: str | None = Field(
        default=None,
        description="Override of the Vertex AI API endpoint (tests use http://127.0.0.1:PORT); "
        "$MEDPRUNE_VERTEX_API_ENDPOINT also sets it.",
    )
    template_repository: str | None = Field(
        default=None,
        description="KFP Artifact Registry repository for pipeline templates: "
        "https://LOCATION-kfp.pkg.dev/PROJECT/REPO.",
    )
    upload_workers: int = Field(default=8, ge=1, le=64, description="Parallel GCS uploads.")

    @field_validator("staging_bucket", "pipeline_root")
    @classmethod
    def _gs_uri(cls, v: str | None) -> str | None:
        if v is not None and not _GCS_BUCKET_URI.match(v):
            raise ValueError(f"must be gs://BUCKET[/PREFIX], got {v!r}")
        return v.rstrip("/") if v else v

    @field_validator("labels")
    @classmethod
    def _label_form(cls, v: dict[str, str]) -> dict[str, str]:
        for key, value in v.items():
            if not _LABEL.match(key) or not _LABEL_VALUE.match(value):
                raise ValueError(
                    f"label {key}={value!r}: keys must match [a-z][a-z0-9_-]{{0,62}} and values "
                    "[a-z0-9_-]{0,63}"
                )
        return v

    @field_validator("promotion_alias")
    @classmethod
    def _alias_form(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"[a-z][a-z0-9\-]{0,126}[a-z0-9]", v):
            raise ValueError(f"alias {v!r} must be lower case letters, digits or -")
        return v

    @field_validator("encryption_spec_key_name")
    @classmethod
    def _kms_key(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(
            r"projects/[^/]+/locations/[^/]+/keyRings/[^/]+/cryptoKeys/[^/]+", v
        ):
            raise ValueError(
                f"must be projects/P/locations/L/keyRings/R/cryptoKeys/K, got {v!r}"
            )
        return v

    def resolved(self, environ: dict[str, str] | None = None) -> VertexConfig:
        """A copy with project, location, staging bucket, pipeline root and API endpoint
        filled from the environment where the config leaves them out.

        Raises ConfigError naming the field and the variable when one stays unset.
        """
        env = os.environ if environ is None else environ
        data = self.model_dump()
        # CLOUD_ML_*: what Vertex AI sets inside its jobs, so a task finds its own project.
        data["project"] = (
            self.project or env.get("GOOGLE_CLOUD_PROJECT") or env.get("CLOUD_ML_PROJECT_ID") or None
        )
        data["location"] = (
            self.location or env.get("GOOGLE_CLOUD_REGION") or env.get("CLOUD_ML_REGION") or None
        )
        if not self.staging_bucket and env.get("MEDPRUNE_BUCKET"):
            bucket = env["MEDPRUNE_BUCKET"]
            data["staging_bucket"] = bucket if bucket.startswith("gs://") else f"gs://{bucket}"
        data["api_endpoint"] = self.api_endpoint or env.get("MEDPRUNE_VERTEX_API_ENDPOINT") or None
        missing = [
            f"vertex.{field} (or ${var})"
            for field, var in (
                ("project", "GOOGLE_CLOUD_PROJECT"),
                ("location", "GOOGLE_CLOUD_REGION"),
                ("staging_bucket", "MEDPRUNE_BUCKET"),
            )
            if not data[field]
        ]
        if missing:
            raise ConfigError("vertex config incomplete: set " + ", ".join(missing))
        if not data["pipeline_root"]:
            data["pipeline_root"] = data["staging_bucket"].rstrip("/") + "/pipeline_root"
        try:
            return VertexConfig.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(_format_errors(exc, "vertex (from environment)")) from None


class RunConfig(_Strict):
    run_name: str = Field(default="medprune", pattern=r"^[a-z0-9][a-z0-9\-]{0,62}$")
    output_dir: str = Field(default="runs", description="Runs are written to OUTPUT_DIR/RUN_ID.")
    seed: int = Field(default=0, ge=0)
    model: ModelConfig
    prune: PruneConfig = Field(default_factory=PruneConfig)
    recover: RecoverConfig = Field(default_factory=RecoverConfig)
    evaluate: EvaluateConfig
    gate: GateConfig = Field(default_factory=GateConfig)
    registry: RegistryConfig = Field(default_factory=RegistryConfig)
    pipeline: PipelineConfig = Field(default_factory=PipelineConfig)
    vertex: VertexConfig | None = Field(
        default=None, description="Vertex AI settings; required when registry.target is 'vertex'."
    )

    @model_validator(mode="after")
    def _vertex_target_needs_vertex(self) -> RunConfig:
        if self.registry.target == "vertex" and self.vertex is None:
            raise ValueError("registry.target is 'vertex' but the 'vertex' section is missing")
        return self

    def to_json(self) -> str:
        return self.model_dump_json()

    @classmethod
    def from_json(cls, text: str) -> RunConfig:
        return parse_config(json.loads(text), origin="<json>")


def _format_errors(exc: ValidationError, origin: str) -> str:
    lines = [f"{origin}: invalid config"]
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        lines.append(f"  {loc}: {msg}")
    return "\n".join(lines)


def parse_config(data: Any, origin: str = "<config>", base_dir: str | Path | None = None) -> RunConfig:
    """Validate a mapping into a RunConfig; relative local paths resolve against ``base_dir``."""
    if not isinstance(data, dict):
        raise ConfigError(f"{origin}: top level must be a mapping, got {type(data).__name__}")
    try:
        cfg = RunConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, origin)) from None
    if base_dir is not None:
        _resolve_paths(cfg, Path(base_dir))
    return cfg


def _resolve_local(value: str | None, base: Path) -> str | None:
    if value is None or "://" in value:
        return value
    p = Path(os.path.expanduser(value))
    return str(p if p.is_absolute() else (base / p).resolve())


def _resolve_paths(cfg: RunConfig, base: Path) -> None:
    cfg.model.source = _resolve_local(cfg.model.source, base)  # type: ignore[assignment]
    cfg.prune.calibration.data = _resolve_local(cfg.prune.calibration.data, base)
    cfg.recover.data = _resolve_local(cfg.recover.data, base)
    cfg.recover.eval_data = _resolve_local(cfg.recover.eval_data, base)
    cfg.recover.checkpoint_dir = _resolve_local(cfg.recover.checkpoint_dir, base)
    cfg.evaluate.mcq = _resolve_local(cfg.evaluate.mcq, base)
    cfg.evaluate.perplexity = _resolve_local(cfg.evaluate.perplexity, base)
    cfg.evaluate.summarization = _resolve_local(cfg.evaluate.summarization, base)
    cfg.output_dir = _resolve_local(cfg.output_dir, base)  # type: ignore[assignment]
    cfg.registry.local.root = _resolve_local(cfg.registry.local.root, base)  # type: ignore[assignment]


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> RunConfig:
    """Load and validate a YAML config. Relative paths in it resolve against the working
    directory, so `medprune run-local examples/local.yaml` behaves like the README says.
    ``overrides`` maps dotted keys (``prune.sparsity``) to values applied before validation."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if data is None:
        raise ConfigError(f"{path}: config file is empty")
    for dotted, value in (overrides or {}).items():
        _set_dotted(data, dotted, value)
    return parse_config(data, origin=str(path), base_dir=Path.cwd())


def _set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    node = data
    parts = dotted.split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {dotted}: {p} is not a mapping")
    node[parts[-1]] = value
