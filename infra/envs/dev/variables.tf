variable "project_id" {
  description = "GCP project of the dev environment."
  type        = string
}

variable "region" {
  description = "Region for Vertex AI and storage."
  type        = string
  default     = "us-central1"
}

variable "pipeline_submitters" {
  description = "Members allowed to run pipelines as the pipeline service account."
  type        = list(string)
  default     = []
}

variable "enable_schedule" {
  description = "Create the Vertex AI schedule (needs schedule_template: apply once without it, build and compile, then enable)."
  type        = bool
  default     = false
}

variable "schedule_cron" {
  description = "Schedule cron with a time zone."
  type        = string
  default     = "TZ=America/New_York 0 3 * * 1"
}

variable "schedule_template" {
  description = "Compiled pipeline the schedule runs (relative to this folder), e.g. ../../../pipeline.yaml."
  type        = string
  default     = ""
}

variable "team" {
  description = "Owning team label."
  type        = string
  default     = "clinical-ai"
}
