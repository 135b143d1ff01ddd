output "tern" {
  description = "Everything the chart values, Argo CD and GitHub need (docs/deploy.md)."
  value       = module.tern
  # It includes the Cloud SQL server CA, which the provider marks sensitive; read it with
  # `tofu output -json tern`.
  sensitive = true
}
