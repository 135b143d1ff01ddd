output "functions" {
  description = "function name -> service account email."
  value       = { for f, sa in google_service_account.function : f => sa.email }
}

output "members" {
  description = "function name -> IAM member (serviceAccount:...)."
  value       = { for f, sa in google_service_account.function : f => "serviceAccount:${sa.email}" }
}

output "push_service_account" {
  description = "The push service account's email."
  value       = google_service_account.push.email
}

output "scheduler_service_account" {
  description = "The scheduler service account's email."
  value       = google_service_account.scheduler.email
}
