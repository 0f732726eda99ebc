output "bucket" {
  description = "Artifacts bucket (vertex.staging_bucket)."
  value       = google_storage_bucket.artifacts.url
}

output "pipeline_root" {
  description = "Pipeline root for runs (vertex.pipeline_root)."
  value       = "${google_storage_bucket.artifacts.url}/pipeline_root"
}

output "image_repository" {
  description = "Docker repository for the medprune images (cloudbuild _REPOSITORY)."
  value       = "${var.region}-docker.pkg.dev/${var.project_id}/${google_artifact_registry_repository.images.repository_id}"
}

output "template_repository" {
  description = "KFP repository host for `medprune upload-template` (vertex.template_repository)."
  value       = "https://${var.region}-kfp.pkg.dev/${var.project_id}/${google_artifact_registry_repository.pipelines.repository_id}"
}

output "pipeline_service_account" {
  description = "Run-as service account (vertex.service_account)."
  value       = google_service_account.pipeline.email
}

output "kms_key" {
  description = "CMEK key (vertex.encryption_spec_key_name), or null."
  value       = local.kms_key_id
}

output "build_service_account" {
  description = "Cloud Build account that pushes the images (gcloud builds submit --service-account)."
  value       = google_service_account.build.id
}

output "medprune_env" {
  description = "Environment for medprune (export each): project, region, bucket, run-as account, CMEK key, image and template repositories; the example configs take them from here."
  value = merge(local.schedule_env, {
    MEDPRUNE_TEMPLATE_REPOSITORY = "https://${var.region}-kfp.pkg.dev/${var.project_id}/${google_artifact_registry_repository.pipelines.repository_id}"
  })
}
