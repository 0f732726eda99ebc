"""Artifact types the components output. Kept apart from the component definitions:
kfp imports this module inside the running task, where ``dsl.component`` is not available."""

# No "from __future__ import annotations" here: kfp reads the real annotation objects.
from kfp.dsl import Artifact


class VertexModel(Artifact):
    """``google.VertexModel``: the Vertex AI console links a pipeline run to the model
    version named by ``metadata["resourceName"]`` (``uri`` is its REST URL)."""

    schema_title = "google.VertexModel"
    schema_version = "0.0.1"
