"""The Terraform in infra/: parsed with python-hcl2 (always) and `terraform fmt` (when
terraform is installed; providers are never downloaded)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import hcl2
import pytest

ROOT = Path(__file__).resolve().parents[2]
MODULE = ROOT / "infra" / "modules" / "medprune"
ENVS = ["dev", "prod"]
# Roles the pipeline service account may hold: nothing project-wide beyond running Vertex AI
# jobs and writing logs; storage and registry roles are granted on the resources themselves.
ALLOWED_PROJECT_ROLES = {"roles/aiplatform.user", "roles/logging.logWriter"}
FORBIDDEN_ROLES = {
    "roles/owner",
    "roles/editor",
    "roles/storage.admin",
    "roles/aiplatform.admin",
    "roles/iam.serviceAccountAdmin",
    "roles/resourcemanager.projectIamAdmin",
}


def _unq(value):
    """python-hcl2 keeps HCL quotes in strings and keys; strip them recursively."""
    if isinstance(value, str):
        return value[1:-1] if len(value) >= 2 and value[0] == value[-1] == '"' else value
    if isinstance(value, list):
        return [_unq(v) for v in value]
    if isinstance(value, dict):
        return {_unq(k): _unq(v) for k, v in value.items() if k != "__is_block__"}
    return value


def _load(folder: Path) -> dict[str, list]:
    merged: dict[str, list] = {}
    for tf in sorted(folder.glob("*.tf")):
        with tf.open() as fh:
            for key, blocks in _unq(hcl2.load(fh)).items():
                merged.setdefault(key, []).extend(blocks)
    return merged


def _resources(doc) -> dict[tuple[str, str], dict]:
    out = {}
    for block in doc.get("resource", []):
        for rtype, named in block.items():
            for name, body in named.items():
                out[(rtype, name)] = body
    return out


def _variables(doc) -> dict[str, dict]:
    return {name: body for block in doc.get("variable", []) for name, body in block.items()}


@pytest.fixture(scope="module")
def module():
    return _load(MODULE)


def test_bucket_is_private_uniform_and_versioned(module) -> None:
    (bucket,) = [b for (t, _), b in _resources(module).items() if t == "google_storage_bucket"]
    assert bucket["uniform_bucket_level_access"] is True
    assert bucket["public_access_prevention"] == "enforced"
    assert bucket["versioning"][0]["enabled"] is True
    assert (
        bucket["dynamic"][0]["encryption"]["content"][0]["default_kms_key_name"]
        == "${local.kms_key_id}"
    )


def test_two_artifact_registry_repositories(module) -> None:
    repos = {
        n: b
        for (t, n), b in _resources(module).items()
        if t == "google_artifact_registry_repository"
    }
    assert sorted(r["format"] for r in repos.values()) == ["DOCKER", "KFP"]
    assert all(r["kms_key_name"] == "${local.kms_key_id}" for r in repos.values())


def test_pipeline_service_account_least_privilege(module) -> None:
    res = _resources(module)
    assert ("google_service_account", "pipeline") in res
    project_roles = set(
        re.findall(r"roles/[\w.]+", str(res[("google_project_iam_member", "pipeline")]["for_each"]))
    )
    assert project_roles == ALLOWED_PROJECT_ROLES
    all_roles = set(re.findall(r"roles/[\w.]+", str(res)))
    assert not all_roles & FORBIDDEN_ROLES
    # storage and registry access is granted on the bucket and repositories, not the project
    assert res[("google_storage_bucket_iam_member", "pipeline_objects")]["bucket"].startswith(
        "${google_storage_bucket.artifacts"
    )
    for name in ("pipeline_images", "pipeline_templates"):
        r = res[("google_artifact_registry_repository_iam_member", name)]
        assert r["role"] == "roles/artifactregistry.reader"
        assert r["member"] == "${google_service_account.pipeline.member}"


def test_cmek_and_schedule_are_optional(module) -> None:
    res = _resources(module)
    for key in [
        ("google_kms_key_ring", "medprune"),
        ("google_kms_crypto_key", "medprune"),
        ("google_kms_crypto_key_iam_member", "pipeline"),
    ]:
        assert res[key]["count"] == "${var.enable_cmek ? 1 : 0}", key
    schedule = res[("terraform_data", "schedule")]
    assert schedule["count"] == "${var.enable_schedule ? 1 : 0}"
    command = schedule["provisioner"][0]["local-exec"]["command"]
    assert command.startswith("medprune schedule ") and "--cron" in command
    # Vertex AI schedules only: no Cloud Scheduler / Pub/Sub / Cloud Functions chain
    assert not {t for t, _ in res} & {
        "google_cloud_scheduler_job",
        "google_pubsub_topic",
        "google_cloudfunctions_function",
        "google_cloudfunctions2_function",
    }


def test_every_variable_used_is_declared_and_described(module) -> None:
    declared = _variables(module)
    text = "\n".join(p.read_text() for p in MODULE.glob("*.tf"))
    used = set(re.findall(r"\bvar\.(\w+)", text))
    assert used <= set(declared), f"undeclared: {used - set(declared)}"
    assert set(declared) <= used, f"unused: {set(declared) - used}"
    for name, body in declared.items():
        assert body.get("description"), f"variable {name} has no description"


@pytest.mark.parametrize("env", ENVS)
def test_environment_is_a_thin_wrapper(module, env) -> None:
    doc = _load(ROOT / "infra" / "envs" / env)
    assert not doc.get("resource"), "environments hold no resources of their own"
    (block,) = doc["module"]
    (call,) = block.values()
    assert call["source"] == "../../modules/medprune"
    declared = _variables(module)
    args = {k for k in call if k not in ("source", "version", "providers", "depends_on")}
    assert args <= set(declared), f"unknown module inputs: {args - set(declared)}"
    required = {n for n, b in declared.items() if "default" not in b}
    assert required <= args, f"missing required inputs: {required - args}"
    assert call["environment"] == env
    env_vars = set(_variables(doc))
    env_text = "\n".join(p.read_text() for p in (ROOT / "infra" / "envs" / env).glob("*.tf"))
    assert set(re.findall(r"\bvar\.(\w+)", env_text)) <= env_vars
    # the config the schedule would run exists
    assert (ROOT / "infra" / "envs" / env / call["schedule_config"]).resolve() == (
        ROOT / "examples" / f"{env}.yaml"
    )
    assert (ROOT / "examples" / f"{env}.yaml").is_file()
    outputs = {n for b in doc["output"] for n in b}
    assert {"bucket", "template_repository", "pipeline_service_account"} <= outputs


def test_prod_uses_cmek_and_keeps_data() -> None:
    (block,) = _load(ROOT / "infra" / "envs" / "prod")["module"]
    call = block["medprune"]
    assert call["enable_cmek"] is True and call["bucket_force_destroy"] is False


@pytest.mark.skipif(
    shutil.which("terraform") is None and shutil.which("tofu") is None,
    reason="terraform/tofu not installed; the hcl2 checks above still ran",
)
def test_terraform_fmt() -> None:
    tool = shutil.which("terraform") or shutil.which("tofu")
    proc = subprocess.run(
        [tool, "fmt", "-check", "-recursive", "-diff", str(ROOT / "infra")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_kms_grants_wait_for_the_service_agents(module) -> None:
    """On a new project the Vertex AI and Artifact Registry service agents do not exist until
    asked for; granting the key to them first fails the apply."""
    res = _resources(module)
    agents = res[("google_project_service_identity", "agents")]
    assert agents["provider"] in ("google-beta", "${google-beta}")
    assert (
        "aiplatform.googleapis.com" in agents["for_each"]
        and "artifactregistry.googleapis.com" in agents["for_each"]
    )
    grants = res[("google_kms_crypto_key_iam_member", "service_agents")]
    text = str(grants["for_each"])
    assert 'google_project_service_identity.agents["aiplatform.googleapis.com"].member' in text
    assert (
        'google_project_service_identity.agents["artifactregistry.googleapis.com"].member' in text
    )
    assert "gcp-sa-aiplatform" not in text  # no hand-built agent e-mails
    assert "${google_project_service_identity.agents}" in grants["depends_on"]
    versions = _load(MODULE)["terraform"][0]["required_providers"][0]
    assert versions["google-beta"]["source"] == "hashicorp/google-beta"


def test_cloud_build_may_push_images_and_the_pipeline_may_act_as_itself(module) -> None:
    res = _resources(module)
    push = res[("google_artifact_registry_repository_iam_member", "build_push")]
    assert push["role"] == "roles/artifactregistry.writer"
    assert push["repository"] == "${google_artifact_registry_repository.images.name}"
    assert push["member"] == "${google_service_account.build.member}"
    assert res[("google_project_iam_member", "build_logs")]["role"] == "roles/logging.logWriter"
    self_use = res[("google_service_account_iam_member", "pipeline_acts_as_itself")]
    assert self_use["service_account_id"] == "${google_service_account.pipeline.name}"
    assert self_use["member"] == "${google_service_account.pipeline.member}"
    assert self_use["role"] == "roles/iam.serviceAccountUser"


def test_schedule_waits_for_a_template_and_is_replaced_and_deleted_cleanly(module) -> None:
    res = _resources(module)
    variables = _variables(module)
    assert variables["enable_schedule"]["default"] is False
    assert variables["schedule_template"]["default"] == ""
    schedule = res[("terraform_data", "schedule")]
    conditions = " ".join(p["condition"] for p in schedule["lifecycle"][0]["precondition"])
    assert (
        "fileexists(var.schedule_template)" in conditions
        and "fileexists(var.schedule_config)" in conditions
    )
    create, destroy = (p["local-exec"] for p in schedule["provisioner"])
    assert "--replace" in create["command"] and "--display-name" in create["command"]
    assert destroy["when"] in ("destroy", "${destroy}") and destroy["command"].startswith(
        "medprune unschedule "
    )
    assert "${self.input.display_name}" in destroy["command"]  # destroy-time: only self
    assert "filesha256(var.schedule_template)" in schedule["triggers_replace"]["template_sha256"]
    for env in ENVS:
        env_vars = _variables(_load(ROOT / "infra" / "envs" / env))
        assert env_vars["enable_schedule"]["default"] is False, env
        assert env_vars["schedule_template"]["default"] == "", env


def test_outputs_give_every_value_the_example_configs_take_from_the_environment(module) -> None:
    from medprune.config.environment import OPTIONAL_FROM_ENV
    from medprune.vertex.template import IMAGE_REPOSITORY_ENV

    outputs = {n: b for block in module["output"] for n, b in block.items()}
    text = str(outputs["medprune_env"]["value"]) + str(module["locals"])
    for var in (
        "GOOGLE_CLOUD_PROJECT",
        "GOOGLE_CLOUD_REGION",
        "MEDPRUNE_BUCKET",
        IMAGE_REPOSITORY_ENV,
        *(v for v in OPTIONAL_FROM_ENV.values() if v != "MEDPRUNE_NETWORK"),
    ):
        assert var in text, var
