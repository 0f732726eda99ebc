# medprune, prod environment: a thin wrapper around the shared module.
#   terraform init -backend-config="bucket=YOUR_TF_STATE_BUCKET"
#   terraform apply -var-file=prod.tfvars

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
    prefix = "medprune/prod"
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
  environment          = "prod"
  pipeline_submitters  = var.pipeline_submitters
  enable_cmek          = true
  bucket_force_destroy = false
  enable_schedule      = var.enable_schedule
  schedule_cron        = var.schedule_cron
  schedule_config      = "../../../examples/prod.yaml"
  schedule_template    = var.schedule_template
  labels               = { team = var.team }
}
