variable "project_id" {
  description = "GCP project that runs medprune."
  type        = string
}

variable "region" {
  description = "Region for Vertex AI, the bucket, Artifact Registry and the KMS key (e.g. us-central1)."
  type        = string
}

variable "environment" {
  description = "Environment name (dev, prod); used in resource names and labels."
  type        = string
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,15}$", var.environment))
    error_message = "environment must be 2-16 lower case letters, digits or -."
  }
}

variable "name_prefix" {
  description = "Prefix of every resource name."
  type        = string
  default     = "medprune"
}

variable "bucket_name" {
  description = "Name of the artifacts bucket (models, pipeline root). Default: PREFIX-ENV-PROJECT."
  type        = string
  default     = null
}

variable "bucket_force_destroy" {
  description = "Allow terraform destroy to delete a non-empty bucket (dev only)."
  type        = bool
  default     = false
}

variable "noncurrent_version_retention_days" {
  description = "Days a replaced or deleted object version is kept before deletion."
  type        = number
  default     = 30
}

variable "enable_cmek" {
  description = "Create a Cloud KMS key and use it for the bucket, the image repositories and (via the run config) Vertex AI."
  type        = bool
  default     = false
}

variable "kms_key_rotation_period" {
  description = "Rotation period of the CMEK key."
  type        = string
  default     = "7776000s"
}

variable "pipeline_submitters" {
  description = "Members (user:..., group:..., serviceAccount:...) allowed to run pipelines as the pipeline service account."
  type        = list(string)
  default     = []
}

variable "enable_schedule" {
  description = "Create a Vertex AI schedule for the pipeline with `medprune schedule` (needs medprune and gcloud credentials where terraform runs)."
  type        = bool
  default     = false
}

variable "schedule_cron" {
  description = "Cron of the schedule, with a time zone, e.g. \"TZ=Europe/London 0 3 * * 1\"."
  type        = string
  default     = "TZ=Etc/UTC 0 3 * * 1"
}

variable "schedule_config" {
  description = "Path of the medprune run config the schedule runs (relative to where terraform runs)."
  type        = string
  default     = ""
}

variable "schedule_template" {
  description = "Path of the compiled pipeline YAML the schedule runs (needed with enable_schedule; compile it after the images are built)."
  type        = string
  default     = ""
}

variable "labels" {
  description = "Labels added to every resource that takes labels."
  type        = map(string)
  default     = {}
}
