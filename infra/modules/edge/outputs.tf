output "addresses" {
  description = "cluster role -> {name, address} of its Gateway's global IP (platform values gateway.addressName)."
  value       = { for c, a in google_compute_global_address.gateway : c => { name = a.name, address = a.address } }
}

output "certificate_map" {
  description = "The certificate map's name (platform values gateway.certificateMap)."
  value       = google_certificate_manager_certificate_map.this.name
}

output "security_policy" {
  description = "The Cloud Armor policy's name (platform values gateway.securityPolicy)."
  value       = google_compute_security_policy.edge.name
}

output "ssl_policy" {
  description = "The SSL policy's name (platform values gateway.sslPolicy)."
  value       = google_compute_ssl_policy.this.name
}

output "dns_authorizations" {
  description = "The CNAME records certificate issuance needs: host -> {name, data}."
  value = {
    for h, a in google_certificate_manager_dns_authorization.host :
    h => { name = a.dns_resource_record[0].name, data = a.dns_resource_record[0].data }
  }
}
