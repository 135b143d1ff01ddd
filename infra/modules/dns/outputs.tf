output "name_servers" {
  description = "Delegate the domain to these (infra/README.md, DNS delegation)."
  value       = google_dns_managed_zone.this.name_servers
}

output "active" {
  description = "Which Gateway the hosts answer with."
  value       = var.active
}

output "targets" {
  description = "host -> the Gateway (cluster role) its record answers with."
  value       = local.target
}

output "addresses" {
  description = "What the host records answer."
  value       = { for h, r in google_dns_record_set.host : h => r.rrdatas }
}
