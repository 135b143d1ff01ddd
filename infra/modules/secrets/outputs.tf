output "database_password" {
  description = "The generated database password (for the Cloud SQL user)."
  value       = random_password.database.result
  sensitive   = true
}

output "database_password_secret" {
  description = "The Secret Manager id holding the database password (the chart's database.passwordSecret)."
  value       = google_secret_manager_secret.this[var.database_password_secret].secret_id
}

output "secret_ids" {
  description = "Every secret this module manages."
  value       = sort(keys(google_secret_manager_secret.this))
}
