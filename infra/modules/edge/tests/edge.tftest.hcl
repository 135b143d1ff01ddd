mock_provider "google" {
  mock_resource "google_certificate_manager_dns_authorization" {
    defaults = {
      dns_resource_record = [{ name = "_acme-challenge.orders.example.com.", type = "CNAME", data = "mock.authorize.certificatemanager.goog." }]
    }
  }
}

variables {
  project_id = "tern-test"
  name       = "tern-test"
  hosts      = ["orders.example.com", "standby.orders.example.com"]
  clusters   = ["primary", "standby"]
}

run "addresses_certificates_armor_and_tls_policy" {
  command = plan

  assert {
    condition     = google_compute_global_address.gateway["primary"].name == "tern-test-ip" && google_compute_global_address.gateway["standby"].name == "tern-test-standby-ip"
    error_message = "one global address per cluster, with the names the platform values use"
  }
  assert {
    condition     = length(google_certificate_manager_certificate.host) == 2 && length(google_certificate_manager_certificate_map_entry.host) == 2
    error_message = "a Google-managed certificate and map entry per host"
  }
  assert {
    condition     = google_compute_ssl_policy.this.min_tls_version == "TLS_1_2" && google_compute_ssl_policy.this.profile == "MODERN"
    error_message = "TLS 1.2 or later, modern ciphers"
  }
  assert {
    condition     = contains([for r in google_compute_security_policy.edge.rule : r.action], "throttle") && contains([for r in google_compute_security_policy.edge.rule : r.action], "deny(403)")
    error_message = "Cloud Armor rate-limits and blocks OWASP attacks"
  }
}

run "a_standby_without_primary_is_refused" {
  command = plan
  variables {
    clusters = ["standby"]
  }
  expect_failures = [var.clusters]
}
