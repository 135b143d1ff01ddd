output "name" {
  description = "The cluster's name."
  value       = google_container_cluster.this.name
}

output "id" {
  description = "The cluster's id."
  value       = google_container_cluster.this.id
}

output "location" {
  description = "The cluster's region."
  value       = google_container_cluster.this.location
}

output "dns_endpoint" {
  description = "The control plane's DNS endpoint (kubectl and Argo CD connect here, authorised by IAM)."
  value       = google_container_cluster.this.control_plane_endpoints_config[0].dns_endpoint_config[0].endpoint
}

output "workload_pool" {
  description = "The Workload Identity pool (<project>.svc.id.goog)."
  value       = google_container_cluster.this.workload_identity_config[0].workload_pool
}

output "node_service_account" {
  description = "The nodes' service account email (granted image pulls by the registry)."
  value       = google_service_account.nodes.email
}

output "deletion_protection" {
  description = "Whether the cluster refuses deletion."
  value       = google_container_cluster.this.deletion_protection
}
