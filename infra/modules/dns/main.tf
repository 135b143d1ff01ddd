resource "google_dns_managed_zone" "this" {
  project     = var.project_id
  name        = var.zone_name
  dns_name    = var.dns_name
  description = "Tern's public zone."
  visibility  = "public"

  dnssec_config {
    state = "on"
    default_key_specs {
      algorithm  = "rsasha256"
      key_length = 2048
      key_type   = "keySigning"
      kind       = "dns#dnsKeySpec"
    }
    default_key_specs {
      algorithm  = "rsasha256"
      key_length = 1024
      key_type   = "zoneSigning"
      kind       = "dns#dnsKeySpec"
    }
  }

  cloud_logging_config {
    enable_logging = true
  }
}

locals {
  # The standby's own hosts (its test host, decision 0012) answer with its Gateway whichever
  # region is active; every other host follows active.
  target  = { for h in var.hosts : h => contains(var.standby_hosts, h) ? "standby" : var.active }
  address = { for h, t in local.target : h => t == "standby" ? var.standby_address : var.primary_address }
}

resource "google_dns_record_set" "host" {
  for_each = toset(var.hosts)

  project      = var.project_id
  managed_zone = google_dns_managed_zone.this.name
  name         = "${each.value}."
  type         = "A"
  ttl          = var.ttl
  rrdatas      = [local.address[each.value]]

  lifecycle {
    precondition {
      condition     = var.active == "primary" || var.standby_address != null
      error_message = "active = \"standby\" needs a standby_address."
    }
    precondition {
      condition     = length(var.standby_hosts) == 0 || var.standby_address != null
      error_message = "standby_hosts need a standby_address."
    }
  }
}

# Detection: an uptime check on the public host from several regions, and an alert when it fails.
resource "google_monitoring_uptime_check_config" "host" {
  project      = var.project_id
  display_name = "${var.hosts[0]} answers"
  timeout      = "10s"
  period       = "60s"

  http_check {
    path           = "/"
    port           = 443
    use_ssl        = true
    validate_ssl   = true
    request_method = "GET"
  }

  monitored_resource {
    type = "uptime_url"
    labels = {
      project_id = var.project_id
      host       = var.hosts[0]
    }
  }

  checker_type     = "STATIC_IP_CHECKERS"
  selected_regions = ["EUROPE", "USA_VIRGINIA", "ASIA_PACIFIC"]
}

resource "google_monitoring_alert_policy" "host_down" {
  project               = var.project_id
  display_name          = "${var.hosts[0]} is down"
  combiner              = "OR"
  notification_channels = var.alert_channels

  conditions {
    display_name = "uptime check failing from 2+ regions for 3 minutes"
    condition_threshold {
      filter          = "metric.type=\"monitoring.googleapis.com/uptime_check/check_passed\" AND resource.type=\"uptime_url\" AND metric.label.check_id=\"${google_monitoring_uptime_check_config.host.uptime_check_id}\""
      comparison      = "COMPARISON_GT"
      threshold_value = 1
      duration        = "180s"
      aggregations {
        alignment_period     = "60s"
        per_series_aligner   = "ALIGN_NEXT_OLDER"
        cross_series_reducer = "REDUCE_COUNT_FALSE"
        group_by_fields      = ["resource.label.host"]
      }
      trigger {
        count = 1
      }
    }
  }

  documentation {
    content   = "The public host fails its uptime check. Runbook: docs/operations.md, \"Region failover\"."
    mime_type = "text/markdown"
  }
}

resource "google_dns_record_set" "extra" {
  for_each = var.extra_records

  project      = var.project_id
  managed_zone = google_dns_managed_zone.this.name
  name         = each.value.name
  type         = each.value.type
  ttl          = 300
  rrdatas      = each.value.rrdatas
}
