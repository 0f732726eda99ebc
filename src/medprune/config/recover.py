"""The `recover` section: recovery fine-tuning, LoRA, distillation and the custom job."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field, StringConstraints, field_validator, model_validator

from medprune.config._base import _Strict


class LoraConfig(_Strict):
    r: int = Field(default=16, ge=1, description="LoRA rank.")
    alpha: float = Field(
        default=32.0, gt=0, description="LoRA scaling numerator (scale = alpha / r)."
    )
    dropout: float = Field(
        default=0.05, ge=0, lt=1, description="Dropout on the LoRA input, in [0, 1)."
    )
    target_modules: list[str] = Field(
        default_factory=lambda: [
            "q_proj",
            "k_proj",
            "v_proj",
            "o_proj",
            "gate_proj",
            "up_proj",
            "down_proj",
        ],
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
    kl_weight: float = Field(
        default=1.0, ge=0, description="Weight of KL(teacher || student) on the logits."
    )
    ce_weight: float = Field(default=0.5, ge=0, description="Weight of cross-entropy on the data.")
    hidden_weight: float = Field(
        default=0.0,
        ge=0,
        description="Weight of intermediate-layer distillation (Minitron): the normalized MSE "
        "between the student's and the teacher's hidden states after the layers of "
        "hidden_layers, each student layer paired with the teacher layer it was pruned from. "
        "0: off (logits only). Needs the same hidden size in both models.",
    )
    hidden_layers: (
        Literal["all"]
        | Annotated[str, StringConstraints(pattern=r"^every:[1-9][0-9]*$")]
        | list[int]
    ) = Field(
        default="all",
        description="Student layers whose outputs are distilled when hidden_weight > 0: 'all' "
        "(every layer but the last, whose output the logit KL already distils), 'every:K' "
        "(layers K-1, 2K-1, ... before the last) or a list of student layer indices (0-based, "
        "not the last).",
    )
    top_k: int | None = Field(
        default=None,
        ge=1,
        description="Distil over the teacher's top_k tokens at each position plus one bucket "
        "holding the rest of the probability mass (bounded work for large vocabularies); "
        "None: KL over the full vocabulary.",
    )

    @field_validator("hidden_layers")
    @classmethod
    def _layers_listed(cls, v: str | list[int]) -> str | list[int]:
        if isinstance(v, list):
            if not v:
                raise ValueError("must name at least one layer, or be 'all' or 'every:K'")
            if any(i < 0 for i in v) or len(set(v)) != len(v):
                raise ValueError(f"layer indices must be distinct and >= 0, got {v}")
            return sorted(v)
        return v

    @model_validator(mode="after")
    def _some_loss(self) -> DistillConfig:
        if self.kl_weight == 0 and self.ce_weight == 0 and self.hidden_weight == 0:
            raise ValueError(
                "kl_weight, ce_weight and hidden_weight are all 0: nothing to train on"
            )
        return self


class TeacherDataConfig(_Strict):
    """Text the dense teacher writes itself, distilled over beside (or instead of) recover.data.

    Self-data distillation (Thangarasa et al. 2024): the unpruned model's own text keeps the
    pruned model close to everything the dense model knew, not only to the domain text.
    The teacher continues two kinds of prompts: the first ``prompt_tokens`` tokens of
    recover.data sequences (its rewrites of the domain text) and openings from a diverse
    set (clinical and general, and the bare BOS token). The token ids are cached by the
    teacher's fingerprint and these settings; the teacher's full next-token distribution
    over them is recomputed during training (the teacher is in memory for distillation).
    """

    sequences: int = Field(
        default=512,
        ge=1,
        le=1_000_000,
        description="Sequences the teacher writes, each recover.seq_len tokens with its prompt.",
    )
    temperature: float = Field(
        default=0.8, gt=0, le=2.0, description="Sampling temperature of the teacher."
    )
    top_p: float = Field(
        default=0.95, gt=0, le=1.0, description="Nucleus sampling share of the teacher."
    )
    rewrite_share: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="Share of teacher sequences that continue a prefix of recover.data (its rewrites "
        "of the domain text); the rest continue the openings.",
    )
    prompt_tokens: int = Field(
        default=16,
        ge=1,
        description="Tokens of a recover.data sequence kept as the prompt of a rewrite.",
    )
    openings: str | None = Field(
        default=None,
        description="JSONL of {text} openings for free continuations; None: medprune's built-in set "
        "(clinical and general openings, plus the BOS token alone).",
    )
    mix: float = Field(
        default=0.5,
        gt=0,
        le=1,
        description="Share of training sequences drawn from the teacher's text, in (0, 1]; the rest "
        "come from recover.data. 1: teacher text only.",
    )
    batch_size: int = Field(default=16, ge=1, description="Sequences generated at once.")
    cache_dir: str | None = Field(
        default=None,
        description="Where generated token ids are cached (local, /gcs/... or gs://); None: "
        "OUTPUT_DIR/teacher-data.",
    )

    @field_validator("mix")
    @classmethod
    def _mix_range(cls, v: float) -> float:
        if not 0 < v <= 1:
            raise ValueError(f"must be in (0, 1], got {v}")
        return v


class CustomJobConfig(_Strict):
    enabled: bool = Field(
        default=False,
        description="Run recovery as its own Vertex AI custom job with the worker pools below "
        "(the local runner always runs it in process).",
    )
    machine_type: str = Field(default="a2-highgpu-1g", description="Compute Engine machine type.")
    accelerator_type: str | None = Field(
        default="NVIDIA_TESLA_A100",
        description="Vertex accelerator type, e.g. NVIDIA_H100_80GB; None for CPU.",
    )
    accelerator_count: int = Field(default=1, ge=0, description="Accelerators per replica.")
    replica_count: int = Field(
        default=1, ge=1, description="Machines; more than 1 means multi-node."
    )
    boot_disk_size_gb: int = Field(default=200, ge=100, description="Boot disk per replica (GB).")
    spot: bool = Field(default=False, description="Use spot VMs (preemptible; recovery resumes).")
    service_account: str | None = Field(
        default=None, description="Run-as service account of the job."
    )
    launcher: Literal["accelerate", "python"] = Field(
        default="accelerate",
        description="'accelerate' runs `accelerate launch` with one process per accelerator and "
        "node; 'python' runs a single process.",
    )
    fsdp: bool = Field(
        default=False,
        description="Shard the model with FSDP2 (for models too large for one GPU); else DDP.",
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
    data: str | None = Field(
        default=None,
        description="JSONL of {text} (or {prompt, response}) to train on; local or gs://.",
    )
    data_source: str | None = Field(
        default=None,
        pattern=r"^[a-z0-9][a-z0-9+_.:-]{0,79}$",
        description="Where the recovery text comes from (data card source); default: the card beside the "
        "file, else user:<file stem>. A name that contradicts the card is an error. Certification sources "
        "from the same source are not independent of it.",
    )
    steps: int = Field(default=20, ge=0, description="Optimizer steps.")
    lr: float = Field(default=1e-5, gt=0, description="Peak learning rate.")
    batch_size: int = Field(default=4, ge=1, description="Sequences per micro-batch per device.")
    seq_len: int = Field(default=128, ge=8, description="Tokens per training sequence.")
    weight_decay: float = Field(default=0.0, ge=0)
    max_grad_norm: float = Field(default=1.0, gt=0)
    mode: Literal["full", "lora"] = Field(
        default="full",
        description="'full' fine-tunes every weight; 'lora' trains adapters and merges them through the masks.",
    )
    lora: LoraConfig = Field(default_factory=LoraConfig)
    distill: DistillConfig = Field(default_factory=DistillConfig)
    grad_accum: int = Field(default=1, ge=1, description="Micro-batches per optimizer step.")
    gradient_checkpointing: bool = Field(
        default=False, description="Recompute activations to save memory."
    )
    warmup_steps: int = Field(
        default=0, ge=0, description="Linear warm-up steps of the learning rate."
    )
    schedule: Literal["cosine", "linear", "constant"] = Field(
        default="cosine", description="Learning-rate decay after warm-up."
    )
    eval_every: int = Field(default=0, ge=0, description="Evaluate loss every N steps (0: never).")
    eval_data: str | None = Field(
        default=None, description="JSONL for evaluation loss (same format as data)."
    )
    eval_fraction: float = Field(
        default=0.0,
        ge=0,
        lt=1,
        description="Hold out this share of the training examples for evaluation when eval_data is unset.",
    )
    early_stopping_patience: int = Field(
        default=0,
        ge=0,
        description="Stop after this many evaluations without improvement (0: never).",
    )
    restore_best: bool = Field(
        default=True,
        description="With evaluation on (eval_every > 0), end with the weights of the step with the lowest "
        "eval loss rather than the last step's (a CPU copy of the trainable weights is kept, and saved "
        "in checkpoints so a resumed run keeps it too). false: keep the last step's weights.",
    )
    checkpoint_every: int = Field(
        default=0, ge=0, description="Save a resumable checkpoint every N steps (0: never)."
    )
    checkpoint_dir: str | None = Field(
        default=None,
        description="Durable checkpoint directory (local, /gcs/..., or gs://B/P read through the /gcs/ mount). "
        "Default: a 'checkpoints' folder beside the output model.",
    )
    keep_checkpoints: int = Field(
        default=2, ge=1, description="Newest checkpoints kept; older ones are deleted."
    )
    resume: bool = Field(
        default=True, description="Resume from the newest checkpoint in checkpoint_dir."
    )
    data_format: Literal["auto", "text", "instruction"] = Field(
        default="auto",
        description="'text' ({text}, packed), 'instruction' ({prompt, response}), or 'auto' (from the first record).",
    )
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = Field(
        default="auto", description="'auto' is bf16 on a GPU and float32 on CPU."
    )
    log_every: int = Field(default=10, ge=1, description="Report loss and tokens/s every N steps.")
    max_minutes: float | None = Field(
        default=None,
        gt=0,
        description="Stop training after this many minutes (checked after each step); None: no limit.",
    )
    budget_clock: Literal["wall", "cpu"] = Field(
        default="wall",
        description="What max_minutes counts: wall-clock time, or CPU time of this process "
        "(steady on a shared machine; on 2 cores, 10 CPU minutes is about 5 wall minutes).",
    )
    custom_job: CustomJobConfig = Field(default_factory=CustomJobConfig)
    teacher_data: TeacherDataConfig | None = Field(
        default=None,
        description="Distil over text the dense teacher writes itself (self-data distillation), "
        "mixed with recover.data at teacher_data.mix; needs recover.distill.enabled.",
    )

    @model_validator(mode="after")
    def _teacher_data_settings(self) -> RecoverConfig:
        td = self.teacher_data
        if td is None:
            return self
        if not self.distill.enabled:
            raise ValueError(
                "teacher_data needs recover.distill.enabled: true (the teacher writes the text and "
                "supplies the distribution distilled over it)"
            )
        if self.data is None and (td.mix < 1 or td.rewrite_share > 0):
            raise ValueError(
                "teacher_data without recover.data needs teacher_data.mix: 1 and "
                "teacher_data.rewrite_share: 0 (there is no domain text to mix with or rewrite)"
            )
        if td.rewrite_share > 0 and td.prompt_tokens >= self.seq_len:
            raise ValueError(
                f"teacher_data.prompt_tokens ({td.prompt_tokens}) leaves no room to write within "
                f"recover.seq_len ({self.seq_len}), the length of every teacher sequence"
            )
        return self

    @model_validator(mode="after")
    def _eval_settings(self) -> RecoverConfig:
        if self.early_stopping_patience and not self.eval_every:
            raise ValueError("early_stopping_patience needs eval_every > 0")
        if self.eval_every and self.eval_data is None and self.eval_fraction == 0:
            raise ValueError("eval_every needs recover.eval_data or recover.eval_fraction > 0")
        return self
