"""End to end with the ``vertex`` registry target: the whole pipeline under kfp.local
registers into the fake Vertex AI server and the Cloud Storage emulator (loopback only)."""

import json
from pathlib import Path

import pytest
import yaml

from medprune.cli import main
from medprune.errors import MedpruneError
from medprune.io.gcs import download_dir

from tests.helpers.fixture_data import write_run_config


def _vertex_config(tmp_path, tiny_model_dir, vertex_env, **gate) -> Path:
    path = write_run_config(tmp_path, tiny_model_dir, gate=gate)
    data = yaml.safe_load(path.read_text())
    data["registry"] = {"target": "vertex", "aliases": ["candidate"]}
    data["vertex"] = vertex_env.vertex_section(
        promotion_alias="gate-passed", labels={"env": "test"}
    )
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.slow
def test_passing_gate_registers_into_vertex(tmp_path, tiny_model_dir, vertex_env, capsys):
    cfg = _vertex_config(
        tmp_path, tiny_model_dir, vertex_env, min_accuracy=0.0, max_perplexity_ratio=100.0
    )
    assert main(["run-local", str(cfg), "--run-id", "v1"]) == 0
    out = capsys.readouterr().out
    summary_path = [ln for ln in out.splitlines() if ln.startswith("summary: ")][-1].removeprefix(
        "summary: "
    )
    summary = json.loads(Path(summary_path).read_text())
    reg = summary["registered"]
    assert reg["target"] == "vertex" and reg["version_id"] == "1"
    assert (
        reg["uri"] == f"https://us-central1-aiplatform.googleapis.com/v1/{reg['resource_name']}@1"
    )
    assert sorted(reg["aliases"]) == [
        "candidate",
        "default",
        "gate-passed",
    ]  # first version: default

    # the register task output a google.VertexModel artifact naming the version
    (out_file,) = Path(summary["artifacts"]).glob(
        "*/register-vertex-component/executor_output.json"
    )
    (vertex_model,) = json.loads(out_file.read_text())["artifacts"]["vertex_model"]["artifacts"]
    assert vertex_model["uri"] == reg["uri"]
    assert vertex_model["metadata"]["resourceName"] == f"{reg['resource_name']}@1"

    fake = vertex_env.vertex
    (upload,) = fake.find("POST", r"models:upload$")
    model = upload.json["model"]
    assert model["displayName"] == "tiny-llama"
    assert model["labels"]["gate"] == "passed" and model["labels"]["env"] == "test"
    assert model["labels"]["method"] == "magnitude" and model["labels"]["sparsity"] == "0_5"
    assert "candidate_accuracy=" in model["description"]
    # what Vertex points at is the pruned candidate, byte for byte, and loads as a model
    copy = download_dir(model["artifactUri"], tmp_path / "from-gcs")
    from medprune.load.model import load_model
    from medprune.prune.apply import sparsity_report

    loaded, _ = load_model(copy)
    assert abs(sparsity_report(loaded)["sparsity"] - 0.5) < 1e-6


@pytest.mark.slow
def test_failed_gate_pipeline_sends_nothing_to_vertex(tmp_path, tiny_model_dir, vertex_env, capsys):
    cfg = _vertex_config(tmp_path, tiny_model_dir, vertex_env, min_accuracy=0.99)
    assert main(["run-local", str(cfg), "--run-id", "v2", "--fail-on-gate"]) == 3
    out = capsys.readouterr().out
    summary_path = [ln for ln in out.splitlines() if ln.startswith("summary: ")][-1].removeprefix(
        "summary: "
    )
    summary = json.loads(Path(summary_path).read_text())
    assert summary["gate"]["passed"] is False and summary["registered"] is None
    assert vertex_env.vertex.requests == []  # not one request to Vertex AI
    assert vertex_env.gcs.objects(vertex_env.bucket) == []  # and nothing uploaded


def test_failed_gate_sends_nothing_to_vertex(tmp_path, tiny_model_dir, vertex_env):
    """The register stage refuses a failed gate before any request (the pipeline's
    not-promoted branch never reaches it; this guards the stage itself)."""
    from medprune.config import load_config
    from medprune.gate.stage import GATE_FILE
    from medprune.register.stage import RunArtifacts, stage_register

    cfg = load_config(_vertex_config(tmp_path, tiny_model_dir, vertex_env, min_accuracy=0.99))
    gate_dir = tmp_path / "gate"
    gate_dir.mkdir()
    (gate_dir / GATE_FILE).write_text(
        json.dumps({"passed": False, "reasons": ["accuracy too low"], "checks": []})
    )
    with pytest.raises(MedpruneError, match="gate did not pass"):
        stage_register(
            cfg,
            RunArtifacts("r", tiny_model_dir, gate_dir, tmp_path, tmp_path, tmp_path / "summary"),
        )
    assert vertex_env.vertex.requests == []
    assert vertex_env.gcs.objects(vertex_env.bucket) == []


def test_vertex_target_compiles_with_vertex_model_output(tmp_path, tiny_model_dir, vertex_env):
    cfg = _vertex_config(tmp_path, tiny_model_dir, vertex_env, min_accuracy=0.0)
    out = tmp_path / "pipeline.yaml"
    assert (
        main(
            ["compile", str(cfg), "-o", str(out), "--image", "us-docker.pkg.dev/p/r/medprune-gpu:1"]
        )
        == 0
    )
    spec = yaml.safe_load(out.read_text())
    outputs = spec["components"]["comp-register-vertex-component"]["outputDefinitions"]["artifacts"]
    assert outputs["vertex_model"]["artifactType"]["schemaTitle"] == "google.VertexModel"
    assert "comp-register-component" not in spec["components"]  # the local registry is not used
    # the bucket reaches the task as a run-time placeholder, not a compiled value
    (task,) = [
        t for t in _all_tasks(spec) if t["componentRef"]["name"] == "comp-register-vertex-component"
    ]
    params = task["inputs"]["parameters"]
    assert params["pipeline_root"]["runtimeValue"]["constant"] == "{{$.pipeline_root}}"
    assert (
        params["job_resource_name"]["runtimeValue"]["constant"]
        == "{{$.pipeline_job_resource_name}}"
    )


def _all_tasks(spec):
    for comp in [spec["root"], *spec["components"].values()]:
        yield from comp.get("dag", {}).get("tasks", {}).values()
