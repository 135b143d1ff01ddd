mock_provider "google" {}

variables {
  project_id      = "tern-test"
  zone_name       = "tern-test"
  dns_name        = "orders.example.com."
  hosts           = ["orders.example.com"]
  primary_address = "203.0.113.10"
}

run "dnssec_on_and_the_host_answers_the_primary" {
  command = plan

  assert {
    condition     = google_dns_managed_zone.this.dnssec_config[0].state == "on"
    error_message = "DNSSEC must be on"
  }
  assert {
    condition     = google_dns_record_set.host["orders.example.com"].rrdatas == tolist(["203.0.113.10"]) && google_dns_record_set.host["orders.example.com"].ttl == 60
    error_message = "the host points at the primary Gateway with a short TTL"
  }
  assert {
    condition     = google_monitoring_uptime_check_config.host.http_check[0].use_ssl && google_monitoring_uptime_check_config.host.monitored_resource[0].labels.host == "orders.example.com"
    error_message = "an HTTPS uptime check watches the public host"
  }
}

run "after_a_failover_the_host_answers_the_standby" {
  command = plan
  variables {
    standby_address = "203.0.113.20"
    active          = "standby"
  }

  assert {
    condition     = google_dns_record_set.host["orders.example.com"].rrdatas == tolist(["203.0.113.20"])
    error_message = "active = standby points the host at the standby Gateway"
  }
}

run "standby_without_an_address_is_refused" {
  command = plan
  variables {
    active = "standby"
  }
  expect_failures = [google_dns_record_set.host]
}

run "the_standby_test_host_answers_the_standby_whichever_region_is_active" {
  command = plan
  variables {
    hosts           = ["orders.example.com", "standby.orders.example.com"]
    standby_hosts   = ["standby.orders.example.com"]
    standby_address = "203.0.113.20"
  }

  assert {
    condition     = google_dns_record_set.host["standby.orders.example.com"].rrdatas == tolist(["203.0.113.20"])
    error_message = "the standby's test host points at the standby Gateway (decision 0012)"
  }
  assert {
    condition     = google_dns_record_set.host["orders.example.com"].rrdatas == tolist(["203.0.113.10"])
    error_message = "the public host still answers the primary"
  }
}

run "the_standby_test_host_needs_a_standby" {
  command = plan
  variables {
    hosts         = ["orders.example.com", "standby.orders.example.com"]
    standby_hosts = ["standby.orders.example.com"]
  }
  expect_failures = [google_dns_record_set.host]
}
