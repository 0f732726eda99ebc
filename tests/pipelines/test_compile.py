import yaml

from medprune.cli import main
from medprune.config import load_config

from conftest import write_run_config


def _compile(tmp_path, tiny_model_dir, **overrides):
    cfg_path = write_run_config(tmp_path, tiny_model_dir, **overrides)
    out = tmp_path / "pipeline.yaml"
    assert main(["compile", str(cfg_path), "-o", str(out), "--image", "europe-docker.pkg.dev/p/r/medprune:1.2.3"]) == 0
    return cfg_path, yaml.safe_load(out.read_text())


def test_compiled_spec_has_stages_condition_and_resources(tmp_path, tiny_model_dir):
    cfg_path, spec = _compile(tmp_path, tiny_model_dir, pipeline={"resources": {"prune": {"cpu": "16", "memory": "96G", "accelerator_type": "NVIDIA_L4", "accelerator_count": 2}}})
    executors = spec["deploymentSpec"]["executors"]
    labels = {name.removeprefix("exec-").split("-component")[0] for name in executors}
    assert {"load", "prune", "recover", "evaluate", "gate", "register", "not-promoted"} <= labels

    root_tasks = spec["root"]["dag"]["tasks"]
    assert {"load-component", "prune-component", "recover-component", "gate-component"} <= set(root_tasks)
    # dsl.If / dsl.Else: two branches on the gate's output, register only in the true one
    branches = spec["components"]["comp-condition-branches-1"]["dag"]["tasks"]
    exprs = {name: t["triggerPolicy"]["condition"] for name, t in branches.items()}
    assert len(exprs) == 2
    (passed_branch,) = [n for n, e in exprs.items() if "gate-component-Output" in e and "== true" in e and not e.startswith("!")]
    (failed_branch,) = [n for n, e in exprs.items() if e.startswith("!(")]
    assert "register-component" in spec["components"][f"comp-{passed_branch}"]["dag"]["tasks"]
    assert "not-promoted-component" in spec["components"][f"comp-{failed_branch}"]["dag"]["tasks"]

    prune = executors["exec-prune-component"]["container"]
    assert prune["image"] == "europe-docker.pkg.dev/p/r/medprune:1.2.3"
    assert prune["resources"]["cpuLimit"] == 16
    assert prune["resources"]["memoryLimit"] == 96
    assert prune["resources"]["accelerator"]["resourceType"] == "NVIDIA_L4"
    assert prune["resources"]["accelerator"]["resourceCount"] == "2"
    gate = executors["exec-gate-component"]["container"]
    assert "accelerator" not in gate["resources"]

    # The run config travels as a pipeline parameter default, not baked into components.
    default = spec["root"]["inputDefinitions"]["parameters"]["config_json"]["defaultValue"]
    expected = load_config(cfg_path)
    expected.pipeline.base_image = "europe-docker.pkg.dev/p/r/medprune:1.2.3"
    assert expected.to_json() == default


def test_run_id_is_a_runtime_placeholder(tmp_path, tiny_model_dir):
    _, spec = _compile(tmp_path, tiny_model_dir)
    text = yaml.safe_dump(spec)
    assert "{{$.pipeline_job_name}}" in text
