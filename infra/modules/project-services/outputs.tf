output "services" {
  description = "The enabled APIs (depend on this to order resources after enablement)."
  value       = [for s in google_project_service.this : s.service]
}
