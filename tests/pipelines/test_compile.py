import json

import yaml

from medprune.cli import main
from medprune.config import load_config

from tests.helpers.fixture_data import write_run_config


def _compile(tmp_path, tiny_model_dir, **overrides):
    cfg_path = write_run_config(tmp_path, tiny_model_dir, **overrides)
    out = tmp_path / "pipeline.yaml"
    assert (
        main(
            [
                "compile",
                str(cfg_path),
                "-o",
                str(out),
                "--image",
                "europe-docker.pkg.dev/p/r/medprune:1.2.3",
            ]
        )
        == 0
    )
    return cfg_path, yaml.safe_load(out.read_text())


def test_compiled_spec_has_stages_condition_and_resources(tmp_path, tiny_model_dir):
    cfg_path, spec = _compile(
        tmp_path,
        tiny_model_dir,
        pipeline={
            "resources": {
                "prune": {
                    "cpu": "16",
                    "memory": "96G",
                    "accelerator_type": "NVIDIA_L4",
                    "accelerator_count": 2,
                }
            }
        },
    )
    executors = spec["deploymentSpec"]["executors"]
    labels = {name.removeprefix("exec-").split("-component")[0] for name in executors}
    assert {"load", "prune", "recover", "evaluate", "gate", "register", "not-promoted"} <= labels

    root_tasks = spec["root"]["dag"]["tasks"]
    assert {"load-component", "prune-component", "recover-component", "gate-component"} <= set(
        root_tasks
    )
    # dsl.If / dsl.Else: two branches on the gate's output, register only in the true one
    branches = spec["components"]["comp-condition-branches-1"]["dag"]["tasks"]
    exprs = {name: t["triggerPolicy"]["condition"] for name, t in branches.items()}
    assert len(exprs) == 2
    (passed_branch,) = [
        n
        for n, e in exprs.items()
        if "gate-component-Output" in e and "== true" in e and not e.startswith("!")
    ]
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


def _tasks(spec):
    """Every task in the compiled spec (root and nested DAGs), by name."""
    out = dict(spec["root"]["dag"]["tasks"])
    for comp in spec["components"].values():
        out.update(comp.get("dag", {}).get("tasks", {}))
    return out


def test_default_image_is_the_one_containers_builds_and_bare_python_is_refused(
    tmp_path, tiny_model_dir, capsys
):
    import medprune

    out = tmp_path / "p.yaml"
    cfg = write_run_config(tmp_path, tiny_model_dir)
    # no image anywhere: refused (it used to compile against python:3.11-slim)
    assert main(["compile", str(cfg), "-o", str(out)]) == 2
    assert "pipeline.base_image: no component image" in capsys.readouterr().err
    assert main(["compile", str(cfg), "-o", str(out), "--image", "python:3.11-slim"]) == 2
    assert "bare base image without kfp and medprune" in capsys.readouterr().err
    assert (
        main(
            [
                "compile",
                str(cfg),
                "-o",
                str(out),
                "--image",
                "docker.io/library/ubuntu@sha256:" + "a" * 64,
            ]
        )
        == 2
    )
    capsys.readouterr()
    # the repository from terraform (config or environment) + this version's tag
    repo = "europe-west4-docker.pkg.dev/my-proj/medprune-prod"
    assert (
        main(["compile", str(cfg), "-o", str(out), "--set", f"pipeline.image_repository={repo}"])
        == 0
    )
    spec = yaml.safe_load(out.read_text())
    images = {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()}
    assert images == {f"{repo}/medprune-gpu:{medprune.__version__}"}
    cpu_only = {s: {"accelerator_type": None} for s in ("prune", "recover", "evaluate")}
    assert (
        main(
            [
                "compile",
                str(cfg),
                "-o",
                str(out),
                "--set",
                f"pipeline.image_repository={repo}",
                "--set",
                "pipeline.image_tag=v7",
                "--set",
                f"pipeline.resources={json.dumps(cpu_only)}",
            ]
        )
        == 0
    )
    spec = yaml.safe_load(out.read_text())
    assert {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()} == {
        f"{repo}/medprune-cpu:v7"
    }


def test_template_records_the_settings_that_shape_its_graph(tmp_path, tiny_model_dir):
    from medprune.vertex.template import recorded_settings

    _, spec = _compile(tmp_path, tiny_model_dir)
    settings = recorded_settings(spec, "pipeline.yaml")
    assert settings["registry.target"] == "local"
    assert settings["recover.custom_job"] == {"enabled": False}
    assert settings["pipeline.image"] == "europe-docker.pkg.dev/p/r/medprune:1.2.3"
    assert settings["pipeline.resources"]["prune"]["accelerator_type"] == "NVIDIA_L4"


def test_cache_keys_include_the_resolved_model_and_data_and_side_effects_are_never_cached(
    tmp_path, tiny_model_dir
):
    _, spec = _compile(tmp_path, tiny_model_dir)
    tasks = _tasks(spec)
    # the resolve task pins the model version and digests the data; it never comes from cache
    assert tasks["resolve-inputs-component"]["cachingOptions"].get("enableCache") is not True
    load_inputs = tasks["load-component"]["inputs"]["parameters"]
    for name in ("model_source", "model_fingerprint"):
        assert load_inputs[name]["taskOutputParameter"] == {
            "producerTask": "resolve-inputs-component",
            "outputParameterKey": name,
        }
    for task in (
        "prune-component",
        "recover-component",
        "evaluate-component",
        "evaluate-component-2",
    ):
        ref = tasks[task]["inputs"]["parameters"]["data_sha256"]["taskOutputParameter"]
        assert ref == {
            "producerTask": "resolve-inputs-component",
            "outputParameterKey": "data_sha256",
        }
        assert tasks[task]["cachingOptions"].get("enableCache") is True
    for task in ("register-component", "not-promoted-component"):
        assert tasks[task]["cachingOptions"].get("enableCache") is not True


def test_vertex_register_task_reads_its_project_from_the_run_placeholder(tmp_path, tiny_model_dir):
    import yaml as _yaml

    cfg_path = write_run_config(tmp_path, tiny_model_dir)
    data = _yaml.safe_load(cfg_path.read_text())
    data["registry"] = {"target": "vertex"}
    data["vertex"] = {}
    cfg_path.write_text(_yaml.safe_dump(data))
    out = tmp_path / "p.yaml"
    assert (
        main(
            [
                "compile",
                str(cfg_path),
                "-o",
                str(out),
                "--image",
                "europe-docker.pkg.dev/p/r/medprune:1",
            ]
        )
        == 0
    )
    register = _tasks(yaml.safe_load(out.read_text()))["register-vertex-component"]
    params = register["inputs"]["parameters"]
    assert (
        params["job_resource_name"]["runtimeValue"]["constant"]
        == "{{$.pipeline_job_resource_name}}"
    )
    assert params["pipeline_root"]["runtimeValue"]["constant"] == "{{$.pipeline_root}}"
    assert register["cachingOptions"].get("enableCache") is not True
