output "secret_ids" {
  description = "Every secret this module manages."
  value       = sort(keys(google_secret_manager_secret.this))
}
