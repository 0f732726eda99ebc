"""Errors medprune raises for bad input. Each message names what is wrong and where."""

from __future__ import annotations


class MedpruneError(Exception):
    """Base class: a problem the user can fix (bad config, data, model files, URI)."""


class ConfigError(MedpruneError):
    """The run configuration is invalid."""


class DataError(MedpruneError):
    """A data file is missing, empty or malformed."""


class ModelLoadError(MedpruneError):
    """A model cannot be loaded (missing, unsafe weight format, unsupported)."""


class PruneError(MedpruneError):
    """Pruning settings are impossible for this model."""


class RecoveryError(MedpruneError):
    """Recovery training failed a check (mask lost, corrupt checkpoint)."""


class RegistryError(MedpruneError):
    """The model registry cannot be written or read."""


class UriError(MedpruneError):
    """A gs:// or vertex:// URI is malformed."""


class StorageError(MedpruneError):
    """Objects in Cloud Storage are missing, or a transfer failed or did not verify."""


class VertexError(MedpruneError):
    """A Vertex AI request (register, submit, schedule) failed or was refused."""


class ExportError(MedpruneError):
    """A model cannot be exported (unsupported architecture, tokenizer, chat template)."""


class DeployError(MedpruneError):
    """A deployment to a serving endpoint failed or was refused; the endpoint is unchanged."""
