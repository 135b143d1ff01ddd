output "workload_identity_provider" {
  description = "The provider resource name GitHub's auth step uses (GitHub variable GCP_WORKLOAD_IDENTITY_PROVIDER)."
  value       = google_iam_workload_identity_pool_provider.github.name
}

output "images_service_account" {
  description = "The image-push identity (GitHub variable GCP_IMAGES_SERVICE_ACCOUNT)."
  value       = google_service_account.images.email
}

output "plan_service_accounts" {
  description = "environment -> plan identity (GitHub environment <env>-plan, variable GCP_TOFU_SERVICE_ACCOUNT)."
  value       = { for e, sa in google_service_account.plan : e => sa.email }
}

output "apply_service_accounts" {
  description = "environment -> apply identity (GitHub environment <env>, variable GCP_TOFU_SERVICE_ACCOUNT)."
  value       = { for e, sa in google_service_account.apply : e => sa.email }
}
