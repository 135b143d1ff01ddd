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

run "pubsub_push_skips_the_per_ip_limit_only_with_a_bearer_token" {
  command = plan
  variables {
    push_paths = ["/events/payments", "/events/orders"]
  }

  assert {
    condition     = one([for r in google_compute_security_policy.edge.rule : r.priority if r.action == "allow" && r.priority < 2000]) == 1900
    error_message = "one allow rule, ahead of the per-IP throttle (2000) and behind the OWASP rules (1000, 1001, 1100)"
  }
  assert {
    condition     = alltrue([for p in ["request.path.matches('^(/events/payments|/events/orders)$')", "request.method == 'POST'", "request.headers['authorization'].startsWith('Bearer ')"] : strcontains(one([for r in google_compute_security_policy.edge.rule : r.match[0].expr[0].expression if r.priority == 1900]), p)])
    error_message = "the exemption names every push path, POST only, and needs a bearer token"
  }
}

run "no_rule_has_more_than_five_subexpressions" {
  command = plan
  variables {
    push_paths = ["/events/payments", "/events/orders", "/events/refunds", "/events/stock"]
  }

  assert {
    condition     = alltrue([for r in google_compute_security_policy.edge.rule : length(split("||", join("", [for e in r.match[0].expr : e.expression]))) + length(split("&&", join("", [for e in r.match[0].expr : e.expression]))) - 1 <= 5])
    error_message = "Cloud Armor refuses a rule with more than five subexpressions"
  }
}

run "no_push_paths_no_exemption" {
  command = plan

  assert {
    condition     = length([for r in google_compute_security_policy.edge.rule : r if r.priority == 1900]) == 0
    error_message = "without push subscriptions nothing skips the per-IP limit"
  }
}

run "a_bad_push_path_is_refused" {
  command = plan
  variables {
    push_paths = ["/events/x' || true || '"]
  }
  expect_failures = [var.push_paths]
}

run "a_standby_without_primary_is_refused" {
  command = plan
  variables {
    clusters = ["standby"]
  }
  expect_failures = [var.clusters]
}
