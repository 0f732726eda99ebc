output "bucket" {
  value = module.medprune.bucket
}

output "pipeline_root" {
  value = module.medprune.pipeline_root
}

output "image_repository" {
  value = module.medprune.image_repository
}

output "template_repository" {
  value = module.medprune.template_repository
}

output "pipeline_service_account" {
  value = module.medprune.pipeline_service_account
}

output "kms_key" {
  value = module.medprune.kms_key
}

output "build_service_account" {
  value = module.medprune.build_service_account
}

output "medprune_env" {
  value = module.medprune.medprune_env
}
