"""The one typed configuration that describes a medprune run.

A run is described by a YAML file loaded into :class:`RunConfig`. Unknown keys and bad
values fail early with a :class:`~medprune.errors.ConfigError` that names the field::

    cfg = load_config("examples/local.yaml")
    cfg.prune.sparsity  # 0.5

One module per section (``model``, ``prune``, ``recover``, ``evaluate``, ``gate``,
``registry``, ``pipeline``, ``vertex``, ``serve``, ``search``); ``run`` joins them; ``loading`` reads files;
``environment`` fills values from the environment (the schema itself has no behaviour).
The config that produced a model is saved next to it (``medprune_config.json``), so a
result always says how it was made.
"""

from medprune.config.environment import resolve_vertex
from medprune.config.evaluate import (
    DEFAULT_NOTE_INSTRUCTION,
    EvaluateConfig,
    JudgeConfig,
    MCQSourceConfig,
    VisitNotesConfig,
)
from medprune.config.gate import GATE_METRICS, GateConfig, NonInferiorityConfig
from medprune.config.loading import load_config, parse_config
from medprune.config.model import ModelConfig
from medprune.config.pipeline import STAGES, PipelineConfig, ResourceConfig
from medprune.config.prune import (
    AllocationConfig,
    CalibrationConfig,
    PruneConfig,
    SparseGPTConfig,
    StructuredConfig,
)
from medprune.config.recover import (
    CustomJobConfig,
    DistillConfig,
    LoraConfig,
    RecoverConfig,
    TeacherDataConfig,
)
from medprune.config.registry import LocalRegistryConfig, RegistryConfig
from medprune.config.run import RunConfig
from medprune.config.search import (
    AxisConfig,
    CertificationConfig,
    RungConfig,
    SearchBudget,
    SearchConfig,
)
from medprune.config.serve import (
    EndpointConfig,
    GGUFExportConfig,
    OllamaConfig,
    RegionConfig,
    ServeConfig,
)
from medprune.config.validation import format_validation_errors
from medprune.config.vertex import DEFAULT_SERVING_IMAGE, VertexConfig

__all__ = [
    "DEFAULT_NOTE_INSTRUCTION",
    "DEFAULT_SERVING_IMAGE",
    "GATE_METRICS",
    "STAGES",
    "AllocationConfig",
    "AxisConfig",
    "CalibrationConfig",
    "CertificationConfig",
    "CustomJobConfig",
    "DistillConfig",
    "EndpointConfig",
    "EvaluateConfig",
    "GGUFExportConfig",
    "GateConfig",
    "JudgeConfig",
    "LocalRegistryConfig",
    "LoraConfig",
    "MCQSourceConfig",
    "ModelConfig",
    "NonInferiorityConfig",
    "OllamaConfig",
    "PipelineConfig",
    "PruneConfig",
    "RecoverConfig",
    "RegionConfig",
    "RegistryConfig",
    "ResourceConfig",
    "RunConfig",
    "RungConfig",
    "SearchBudget",
    "SearchConfig",
    "ServeConfig",
    "SparseGPTConfig",
    "StructuredConfig",
    "TeacherDataConfig",
    "VertexConfig",
    "VisitNotesConfig",
    "format_validation_errors",
    "load_config",
    "parse_config",
    "resolve_vertex",
]
