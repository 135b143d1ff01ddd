output "name" {
  description = "The state bucket (each environment's backend.hcl names it)."
  value       = google_storage_bucket.state.name
}
