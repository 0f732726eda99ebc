# medprune, dev environment: a thin wrapper around the shared module.
#   terraform init -backend-config="bucket=YOUR_TF_STATE_BUCKET"
#   terraform apply -var-file=dev.tfvars

terraform {
  required_version = ">= 1.5"
  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 5.40, < 7.0"
    }
    google-beta = {
      source  = "hashicorp/google-beta"
      version = ">= 5.40, < 7.0"
    }
  }
  backend "gcs" {
    prefix = "medprune/dev"
  }
}

provider "google" {
  project = var.project_id
  region  = var.region
}

provider "google-beta" {
  project = var.project_id
  region  = var.region
}

module "medprune" {
  source = "../../modules/medprune"

  project_id           = var.project_id
  region               = var.region
  environment          = "dev"
  pipeline_submitters  = var.pipeline_submitters
  enable_cmek          = false
  bucket_force_destroy = true
  enable_schedule      = var.enable_schedule
  schedule_cron        = var.schedule_cron
  schedule_config      = "../../../examples/dev.yaml"
  schedule_template    = var.schedule_template
  labels               = { team = var.team }
}
