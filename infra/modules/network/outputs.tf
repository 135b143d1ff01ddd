output "network_id" {
  description = "The VPC's id."
  value       = google_compute_network.this.id
}

output "network_name" {
  description = "The VPC's name."
  value       = google_compute_network.this.name
}

output "subnets" {
  description = "region -> subnet self link."
  value       = { for r, s in google_compute_subnetwork.this : r => s.self_link }
}

output "private_services_cidr" {
  description = "The private services access range (Cloud SQL), for NetworkPolicies."
  value       = var.private_services_cidr
}

output "private_services_connection" {
  description = "The private services connection; Cloud SQL must be created after it."
  value       = google_service_networking_connection.private_services.id
}
