# What the GKE Gateway (knative/platform) refers to by name: its global address, the certificate
# map, the Cloud Armor policy and the SSL policy.

resource "google_compute_global_address" "gateway" {
  for_each = toset(var.clusters)

  project      = var.project_id
  name         = each.value == "primary" ? "${var.name}-ip" : "${var.name}-${each.value}-ip"
  address_type = "EXTERNAL"
  ip_version   = "IPV4"
}

resource "google_certificate_manager_dns_authorization" "host" {
  for_each = toset(var.hosts)

  project = var.project_id
  name    = "${var.name}-${replace(each.value, ".", "-")}"
  domain  = each.value
}

resource "google_certificate_manager_certificate" "host" {
  for_each = toset(var.hosts)

  project = var.project_id
  name    = "${var.name}-${replace(each.value, ".", "-")}"
  scope   = "DEFAULT"
  managed {
    domains            = [each.value]
    dns_authorizations = [google_certificate_manager_dns_authorization.host[each.value].id]
  }
}

resource "google_certificate_manager_certificate_map" "this" {
  project     = var.project_id
  name        = "${var.name}-certs"
  description = "Certificates of the Tern Gateway(s)."
}

resource "google_certificate_manager_certificate_map_entry" "host" {
  for_each = toset(var.hosts)

  project      = var.project_id
  name         = "${var.name}-${replace(each.value, ".", "-")}"
  map          = google_certificate_manager_certificate_map.this.name
  hostname     = each.value
  certificates = [google_certificate_manager_certificate.host[each.value].id]
}

resource "google_compute_ssl_policy" "this" {
  project         = var.project_id
  name            = "${var.name}-tls"
  profile         = "MODERN"
  min_tls_version = "TLS_1_2"
}

resource "google_compute_security_policy" "edge" {
  project     = var.project_id
  name        = "${var.name}-edge"
  description = "Cloud Armor in front of the Tern Gateway: OWASP rules, per-IP rate limit (Pub/Sub push exempt)."
  type        = "CLOUD_ARMOR"

  # Cloud Armor takes at most five subexpressions per rule: the OWASP set is two rules.
  rule {
    action      = "deny(403)"
    priority    = 1000
    description = "OWASP CRS: SQL injection, XSS, local and remote file inclusion."
    match {
      expr {
        expression = "evaluatePreconfiguredWaf('sqli-v33-stable', {'sensitivity': 1}) || evaluatePreconfiguredWaf('xss-v33-stable', {'sensitivity': 1}) || evaluatePreconfiguredWaf('lfi-v33-stable', {'sensitivity': 1}) || evaluatePreconfiguredWaf('rfi-v33-stable', {'sensitivity': 1})"
      }
    }
  }

  rule {
    action      = "deny(403)"
    priority    = 1001
    description = "OWASP CRS: RCE, scanners, protocol attacks."
    match {
      expr {
        expression = "evaluatePreconfiguredWaf('rce-v33-stable', {'sensitivity': 1}) || evaluatePreconfiguredWaf('scannerdetection-v33-stable', {'sensitivity': 1}) || evaluatePreconfiguredWaf('protocolattack-v33-stable', {'sensitivity': 1})"
      }
    }
  }

  rule {
    action      = "deny(403)"
    priority    = 1100
    description = "Log4j (CVE-2021-44228) probes."
    match {
      expr {
        expression = "evaluatePreconfiguredWaf('cve-canary')"
      }
    }
  }

  dynamic "rule" {
    for_each = length(var.push_paths) > 0 ? [var.push_paths] : []
    content {
      action      = "allow"
      priority    = 1900
      description = "Pub/Sub push with a bearer token: not rate-limited per IP (the function verifies the Google-signed token)."
      match {
        expr {
          # Four subexpressions (Cloud Armor allows five): every path in one anchored regex.
          expression = "request.method == 'POST' && request.path.matches('^(${join("|", [for p in rule.value : replace(p, ".", "\\\\.")])})$') && has(request.headers['authorization']) && request.headers['authorization'].startsWith('Bearer ')"
        }
      }
    }
  }

  rule {
    action      = "throttle"
    priority    = 2000
    description = "Per-IP rate limit."
    match {
      versioned_expr = "SRC_IPS_V1"
      config {
        src_ip_ranges = ["*"]
      }
    }
    rate_limit_options {
      conform_action = "allow"
      exceed_action  = "deny(429)"
      enforce_on_key = "IP"
      rate_limit_threshold {
        count        = var.rate_limit_per_minute
        interval_sec = 60
      }
    }
  }

  rule {
    action      = "allow"
    priority    = 2147483647
    description = "Default: allow."
    match {
      versioned_expr = "SRC_IPS_V1"
      config {
        src_ip_ranges = ["*"]
      }
    }
  }

  advanced_options_config {
    log_level = "VERBOSE"
  }
}
