# medprune on Vertex AI: one artifacts bucket, two Artifact Registry repositories (DOCKER
# images, KFP templates), a dedicated pipeline service account with only the roles it needs,
# an optional CMEK key, and an optional Vertex AI schedule.

locals {
  name        = "${var.name_prefix}-${var.environment}"
  bucket_name = coalesce(var.bucket_name, "${local.name}-${var.project_id}")
  labels      = merge({ app = "medprune", environment = var.environment }, var.labels)
  kms_key_id  = var.enable_cmek ? google_kms_crypto_key.medprune[0].id : null
  services = toset(concat(
    ["aiplatform.googleapis.com", "artifactregistry.googleapis.com", "storage.googleapis.com",
    "cloudbuild.googleapis.com", "iam.googleapis.com"],
    var.enable_cmek ? ["cloudkms.googleapis.com"] : [],
  ))
}

data "google_project" "this" {
  project_id = var.project_id
}

resource "google_project_service" "apis" {
  for_each           = local.services
  project            = var.project_id
  service            = each.value
  disable_on_destroy = false
}

# --- optional customer-managed encryption key ----------------------------------------------

resource "google_kms_key_ring" "medprune" {
  count      = var.enable_cmek ? 1 : 0
  project    = var.project_id
  name       = local.name
  location   = var.region
  depends_on = [google_project_service.apis]
}

resource "google_kms_crypto_key" "medprune" {
  count           = var.enable_cmek ? 1 : 0
  name            = "${local.name}-key"
  key_ring        = google_kms_key_ring.medprune[0].id
  rotation_period = var.kms_key_rotation_period
  labels          = local.labels
  lifecycle {
    prevent_destroy = true
  }
}

# The Google-managed service agents that encrypt on our behalf need the key. On a new
# project they do not exist until asked for: google_project_service_identity creates the
# Vertex AI and Artifact Registry agents (and the storage data source the Cloud Storage
# agent) before the grants, so the grants never name a missing account.
resource "google_project_service_identity" "agents" {
  provider   = google-beta
  for_each   = var.enable_cmek ? toset(["aiplatform.googleapis.com", "artifactregistry.googleapis.com"]) : toset([])
  project    = var.project_id
  service    = each.value
  depends_on = [google_project_service.apis]
}

data "google_storage_project_service_account" "gcs" {
  project    = var.project_id
  depends_on = [google_project_service.apis]
}

resource "google_kms_crypto_key_iam_member" "service_agents" {
  for_each = var.enable_cmek ? {
    storage          = "serviceAccount:${data.google_storage_project_service_account.gcs.email_address}"
    aiplatform       = google_project_service_identity.agents["aiplatform.googleapis.com"].member
    artifactregistry = google_project_service_identity.agents["artifactregistry.googleapis.com"].member
  } : {}
  crypto_key_id = google_kms_crypto_key.medprune[0].id
  role          = "roles/cloudkms.cryptoKeyEncrypterDecrypter"
  member        = each.value
  depends_on    = [google_project_service_identity.agents]
}

# --- artifacts bucket: models and pipeline root ----------------------------------------------

resource "google_storage_bucket" "artifacts" {
  project                     = var.project_id
  name                        = local.bucket_name
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = var.bucket_force_destroy
  labels                      = local.labels

  versioning {
    enabled = true
  }

  lifecycle_rule {
    condition {
      days_since_noncurrent_time = var.noncurrent_version_retention_days
      with_state                 = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
  }

  dynamic "encryption" {
    for_each = var.enable_cmek ? [1] : []
    content {
      default_kms_key_name = local.kms_key_id
    }
  }

  depends_on = [google_project_service.apis, google_kms_crypto_key_iam_member.service_agents]
}

# --- Artifact Registry: container images and pipeline templates ---------------------------

resource "google_artifact_registry_repository" "images" {
  project       = var.project_id
  location      = var.region
  repository_id = local.name
  format        = "DOCKER"
  description   = "medprune container images (cpu, gpu)"
  kms_key_name  = local.kms_key_id
  labels        = local.labels
  depends_on    = [google_project_service.apis, google_kms_crypto_key_iam_member.service_agents]
}

resource "google_artifact_registry_repository" "pipelines" {
  project       = var.project_id
  location      = var.region
  repository_id = "${local.name}-pipelines"
  format        = "KFP"
  description   = "medprune compiled pipeline templates"
  kms_key_name  = local.kms_key_id
  labels        = local.labels
  depends_on    = [google_project_service.apis, google_kms_crypto_key_iam_member.service_agents]
}

# --- the pipeline's run-as service account, least privilege ---------------------------------

resource "google_service_account" "pipeline" {
  project      = var.project_id
  account_id   = "${local.name}-pipeline"
  display_name = "medprune pipeline runs (${var.environment})"
  depends_on   = [google_project_service.apis]
}

# Project level: only run Vertex AI jobs / register models, and write logs.
resource "google_project_iam_member" "pipeline" {
  for_each = toset(["roles/aiplatform.user", "roles/logging.logWriter"])
  project  = var.project_id
  role     = each.value
  member   = google_service_account.pipeline.member
}

# Everything else is scoped to the one bucket and the two repositories.
resource "google_storage_bucket_iam_member" "pipeline_objects" {
  bucket = google_storage_bucket.artifacts.name
  role   = "roles/storage.objectUser"
  member = google_service_account.pipeline.member
}

resource "google_storage_bucket_iam_member" "pipeline_bucket_read" {
  bucket = google_storage_bucket.artifacts.name
  role   = "roles/storage.legacyBucketReader"
  member = google_service_account.pipeline.member
}

resource "google_artifact_registry_repository_iam_member" "pipeline_images" {
  project    = var.project_id
  location   = var.region
  repository = google_artifact_registry_repository.images.name
  role       = "roles/artifactregistry.reader"
  member     = google_service_account.pipeline.member
}

resource "google_artifact_registry_repository_iam_member" "pipeline_templates" {
  project    = var.project_id
  location   = var.region
  repository = google_artifact_registry_repository.pipelines.name
  role       = "roles/artifactregistry.reader"
  member     = google_service_account.pipeline.member
}

resource "google_kms_crypto_key_iam_member" "pipeline" {
  count         = var.enable_cmek ? 1 : 0
  crypto_key_id = google_kms_crypto_key.medprune[0].id
  role          = "roles/cloudkms.cryptoKeyEncrypterDecrypter"
  member        = google_service_account.pipeline.member
}

# Who may start runs as this service account.
resource "google_service_account_iam_member" "submitters" {
  for_each           = toset(var.pipeline_submitters)
  service_account_id = google_service_account.pipeline.name
  role               = "roles/iam.serviceAccountUser"
  member             = each.value
}

# The recover step's custom job runs as the pipeline's own account: a task running as that
# account may start jobs as itself (actAs on itself, nothing wider).
resource "google_service_account_iam_member" "pipeline_acts_as_itself" {
  service_account_id = google_service_account.pipeline.name
  role               = "roles/iam.serviceAccountUser"
  member             = google_service_account.pipeline.member
}

# --- Cloud Build: builds and pushes the images -------------------------------------------
# A dedicated build account (new projects no longer give the default Cloud Build account
# write access): push to the image repository only, read the build source staged in the
# artifacts bucket, write build logs.
resource "google_service_account" "build" {
  project      = var.project_id
  account_id   = "${local.name}-build"
  display_name = "medprune image builds (${var.environment})"
  depends_on   = [google_project_service.apis]
}

resource "google_artifact_registry_repository_iam_member" "build_push" {
  project    = var.project_id
  location   = var.region
  repository = google_artifact_registry_repository.images.name
  role       = "roles/artifactregistry.writer"
  member     = google_service_account.build.member
}

resource "google_project_iam_member" "build_logs" {
  project = var.project_id
  role    = "roles/logging.logWriter"
  member  = google_service_account.build.member
}

resource "google_storage_bucket_iam_member" "build_source" {
  bucket = google_storage_bucket.artifacts.name
  role   = "roles/storage.objectViewer"
  member = google_service_account.build.member
}

resource "google_service_account_iam_member" "build_submitters" {
  for_each           = toset(var.pipeline_submitters)
  service_account_id = google_service_account.build.name
  role               = "roles/iam.serviceAccountUser"
  member             = each.value
}

# --- optional Vertex AI schedule ----------------------------------------------------------
# The google provider has no Vertex AI pipeline schedule resource, so the schedule is made
# with medprune's own `schedule` command (Vertex AI schedules, no Cloud Scheduler chain).
# It needs a compiled template, so it is off until one is given (docs/vertex.md: apply,
# build images, compile, then apply again with enable_schedule and schedule_template). A
# change of cron, config or template replaces it (`--replace` deletes the old one by name
# first) and destroy deletes it (`medprune unschedule`): no orphan schedules.
locals {
  schedule_env = {
    GOOGLE_CLOUD_PROJECT      = var.project_id
    GOOGLE_CLOUD_REGION       = var.region
    MEDPRUNE_BUCKET           = google_storage_bucket.artifacts.name
    MEDPRUNE_SERVICE_ACCOUNT  = google_service_account.pipeline.email
    MEDPRUNE_KMS_KEY          = local.kms_key_id == null ? "" : local.kms_key_id
    MEDPRUNE_IMAGE_REPOSITORY = "${var.region}-docker.pkg.dev/${var.project_id}/${google_artifact_registry_repository.images.repository_id}"
  }
}

resource "terraform_data" "schedule" {
  count = var.enable_schedule ? 1 : 0
  input = {
    config       = var.schedule_config
    template     = var.schedule_template
    cron         = var.schedule_cron
    display_name = "${local.name}-schedule"
    env          = local.schedule_env
  }
  triggers_replace = {
    cron            = var.schedule_cron
    config          = var.schedule_config
    template        = var.schedule_template
    config_sha256   = fileexists(var.schedule_config) ? filesha256(var.schedule_config) : ""
    template_sha256 = fileexists(var.schedule_template) ? filesha256(var.schedule_template) : ""
  }
  provisioner "local-exec" {
    command     = "medprune schedule '${self.input.config}' --template '${self.input.template}' --cron '${self.input.cron}' --display-name '${self.input.display_name}' --replace"
    environment = self.input.env
  }
  provisioner "local-exec" {
    when        = destroy
    command     = "medprune unschedule '${self.input.config}' --display-name '${self.input.display_name}'"
    environment = self.input.env
  }
  lifecycle {
    precondition {
      condition     = var.schedule_config != "" && fileexists(var.schedule_config)
      error_message = "enable_schedule needs schedule_config: an existing run config file."
    }
    precondition {
      condition     = var.schedule_template != "" && fileexists(var.schedule_template)
      error_message = "enable_schedule needs schedule_template: a pipeline compiled with `medprune compile` (build the images and compile first; see docs/vertex.md)."
    }
  }
  depends_on = [
    google_project_iam_member.pipeline,
    google_storage_bucket_iam_member.pipeline_objects,
    google_service_account_iam_member.pipeline_acts_as_itself,
    google_kms_crypto_key_iam_member.pipeline,
  ]
}
