# What the clusters' own Prometheus cannot see, watched by Cloud Monitoring: Cloud SQL, Pub/Sub,
# GKE's nodes. Every policy notifies the environment's channels and names its runbook in
# docs/operations.md ("Alerts and SLOs"). The functions' own alerts are the chart's GMP Rules.

locals {
  channels = concat(
    [for c in google_monitoring_notification_channel.email : c.id],
    var.notification_channels,
  )
  sql_ids        = [for i in var.sql_instances : "${var.project_id}:${i}"]
  sql_filter     = "resource.type=\"cloudsql_database\" AND resource.label.database_id=one_of(${join(",", [for i in local.sql_ids : "\"${i}\""])})"
  runbook        = "docs/operations.md, \"Alerts and SLOs\""
  connection_cap = floor(var.max_connections * 0.8)
}

resource "google_monitoring_notification_channel" "email" {
  for_each = toset(var.notification_emails)

  project      = var.project_id
  display_name = "tern ${var.environment}: ${each.value}"
  type         = "email"
  labels = {
    email_address = each.value
  }
}

resource "google_monitoring_alert_policy" "sql_cpu" {
  project               = var.project_id
  display_name          = "tern ${var.environment}: Cloud SQL CPU above ${var.thresholds.sql_cpu * 100} %"
  combiner              = "OR"
  notification_channels = local.channels
  severity              = "WARNING"

  conditions {
    display_name = "CPU utilization above ${var.thresholds.sql_cpu * 100} % for 10 minutes"
    condition_threshold {
      filter          = "metric.type=\"cloudsql.googleapis.com/database/cpu/utilization\" AND ${local.sql_filter}"
      comparison      = "COMPARISON_GT"
      threshold_value = var.thresholds.sql_cpu
      duration        = "600s"
      aggregations {
        alignment_period   = "60s"
        per_series_aligner = "ALIGN_MEAN"
      }
    }
  }

  documentation {
    content   = "The database's CPU is nearly used up: queries slow down, then the functions' latency SLO burns. Runbook: ${local.runbook}, TernLatencyFastBurn."
    mime_type = "text/markdown"
  }
}

resource "google_monitoring_alert_policy" "sql_connections" {
  project               = var.project_id
  display_name          = "tern ${var.environment}: Cloud SQL connections above 80 % of max_connections"
  combiner              = "OR"
  notification_channels = local.channels
  severity              = "WARNING"

  conditions {
    display_name = "backends above ${local.connection_cap} of ${var.max_connections} for 5 minutes"
    condition_threshold {
      filter          = "metric.type=\"cloudsql.googleapis.com/database/postgresql/num_backends\" AND ${local.sql_filter}"
      comparison      = "COMPARISON_GT"
      threshold_value = local.connection_cap
      duration        = "300s"
      aggregations {
        alignment_period     = "60s"
        per_series_aligner   = "ALIGN_MEAN"
        cross_series_reducer = "REDUCE_SUM"
        group_by_fields      = ["resource.label.database_id"]
      }
    }
  }

  documentation {
    content   = "The functions' pools (max instances x DB_POOL_SIZE) come close to max_connections: the next scale-out is refused connections. Runbook: docs/operations.md, \"Database connection budget\"."
    mime_type = "text/markdown"
  }
}

resource "google_monitoring_alert_policy" "replica_lag" {
  count = var.replica_instance == null ? 0 : 1

  project               = var.project_id
  display_name          = "tern ${var.environment}: Cloud SQL replica lag above ${var.thresholds.replica_lag_seconds} s"
  combiner              = "OR"
  notification_channels = local.channels
  severity              = "ERROR"

  conditions {
    display_name = "replica lag above ${var.thresholds.replica_lag_seconds} s for 5 minutes"
    condition_threshold {
      filter          = "metric.type=\"cloudsql.googleapis.com/database/replication/replica_lag\" AND resource.type=\"cloudsql_database\" AND resource.label.database_id=\"${var.project_id}:${var.replica_instance}\""
      comparison      = "COMPARISON_GT"
      threshold_value = var.thresholds.replica_lag_seconds
      duration        = "300s"
      aggregations {
        alignment_period   = "60s"
        per_series_aligner = "ALIGN_MAX"
      }
    }
  }

  documentation {
    content   = "The standby region's replica falls behind: a failover now would lose the writes it has not replayed. Runbook: docs/operations.md, \"Region failover (prod) and failback\"."
    mime_type = "text/markdown"
  }
}

resource "google_monitoring_alert_policy" "dead_letters" {
  project               = var.project_id
  display_name          = "tern ${var.environment}: events in a dead-letter topic"
  combiner              = "OR"
  notification_channels = local.channels
  severity              = "WARNING"

  conditions {
    display_name = "undelivered messages on a dead-letter subscription"
    condition_threshold {
      filter          = "metric.type=\"pubsub.googleapis.com/subscription/num_undelivered_messages\" AND resource.type=\"pubsub_subscription\" AND resource.label.subscription_id=one_of(${join(",", [for s in var.dead_letter_subscriptions : "\"${s}\""])})"
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "300s"
      aggregations {
        alignment_period   = "60s"
        per_series_aligner = "ALIGN_MAX"
      }
    }
  }

  documentation {
    content   = "Events no consumer took after the subscription's retry budget. Runbook: docs/operations.md, \"Dead-lettered events\"."
    mime_type = "text/markdown"
  }
}

resource "google_monitoring_alert_policy" "oldest_unacked" {
  project               = var.project_id
  display_name          = "tern ${var.environment}: Pub/Sub deliveries older than ${var.thresholds.oldest_unacked_seconds} s"
  combiner              = "OR"
  notification_channels = local.channels
  severity              = "ERROR"

  conditions {
    display_name = "oldest unacknowledged message older than ${var.thresholds.oldest_unacked_seconds} s for 5 minutes"
    condition_threshold {
      filter          = "metric.type=\"pubsub.googleapis.com/subscription/oldest_unacked_message_age\" AND resource.type=\"pubsub_subscription\" AND resource.label.subscription_id=one_of(${join(",", [for s in var.push_subscriptions : "\"${s}\""])})"
      comparison      = "COMPARISON_GT"
      threshold_value = var.thresholds.oldest_unacked_seconds
      duration        = "300s"
      aggregations {
        alignment_period   = "60s"
        per_series_aligner = "ALIGN_MAX"
      }
    }
  }

  documentation {
    content   = "A consumer does not keep up or refuses every delivery (503s, its OIDC check, Cloud Armor). Runbook: ${local.runbook}, TernEventsDeadLettering and TernAvailabilityFastBurn."
    mime_type = "text/markdown"
  }
}

resource "google_monitoring_alert_policy" "gke_nodes" {
  project               = var.project_id
  display_name          = "tern ${var.environment}: GKE nodes unhealthy"
  combiner              = "OR"
  notification_channels = local.channels
  severity              = "ERROR"

  conditions {
    display_name = "a node's allocatable memory above ${var.thresholds.node_utilization * 100} % for 15 minutes"
    condition_threshold {
      filter          = "metric.type=\"kubernetes.io/node/memory/allocatable_utilization\" AND resource.type=\"k8s_node\" AND metric.label.memory_type=\"non-evictable\""
      comparison      = "COMPARISON_GT"
      threshold_value = var.thresholds.node_utilization
      duration        = "900s"
      aggregations {
        alignment_period   = "60s"
        per_series_aligner = "ALIGN_MEAN"
      }
    }
  }
  conditions {
    display_name = "a node's allocatable CPU above ${var.thresholds.node_utilization * 100} % for 15 minutes"
    condition_threshold {
      filter          = "metric.type=\"kubernetes.io/node/cpu/allocatable_utilization\" AND resource.type=\"k8s_node\""
      comparison      = "COMPARISON_GT"
      threshold_value = var.thresholds.node_utilization
      duration        = "900s"
      aggregations {
        alignment_period   = "60s"
        per_series_aligner = "ALIGN_MEAN"
      }
    }
  }
  conditions {
    display_name = "a cluster's nodes stopped reporting for 10 minutes"
    condition_absent {
      filter   = "metric.type=\"kubernetes.io/node/cpu/allocatable_cores\" AND resource.type=\"k8s_node\""
      duration = "600s"
      aggregations {
        alignment_period     = "60s"
        per_series_aligner   = "ALIGN_MEAN"
        cross_series_reducer = "REDUCE_COUNT"
        group_by_fields      = ["resource.label.cluster_name"]
      }
    }
  }

  documentation {
    content   = "Nodes are out of memory or CPU, or a cluster's nodes stopped reporting: pods are evicted or cannot be scheduled. `kubectl get nodes`; `kubectl describe node NAME` (Conditions); GKE's node auto-repair and autoscaler events. Runbook: ${local.runbook}."
    mime_type = "text/markdown"
  }
}

# The functions' own alerts: the chart's Managed Prometheus Rules evaluate them and write every
# firing one into the ALERTS series, but Managed Prometheus sends nothing anywhere by itself (no
# Alertmanager is configured). One policy per severity turns those series into incidents on the
# environment's channels; each incident carries the alert's labels (alertname, function, ...).
resource "google_monitoring_alert_policy" "functions" {
  for_each = { page = "CRITICAL", ticket = "WARNING" }

  project               = var.project_id
  display_name          = "tern ${var.environment}: ${each.key} alerts of the functions' rules"
  combiner              = "OR"
  notification_channels = local.channels
  severity              = each.value

  conditions {
    display_name = "an alert with severity ${each.key} is firing in namespace ${var.functions_namespace}"
    condition_prometheus_query_language {
      query               = "ALERTS{alertstate=\"firing\",severity=\"${each.key}\",namespace=\"${var.functions_namespace}\"}"
      duration            = "0s"
      evaluation_interval = "60s"
      # ALERTS exists once a rule first fires.
      disable_metric_validation = true
    }
  }

  documentation {
    content   = "A rule of knative/chart/tern-functions/files/rules.yaml fires; the incident's labels name it (alertname) and where (function, cluster). What each alert means and what to do: ${local.runbook}."
    mime_type = "text/markdown"
  }
}

# Requests the functions' own metrics never see: the activator's and queue-proxy's errors, a
# revision that does not start. Measured where users are, at the Gateway's load balancer.
resource "google_monitoring_alert_policy" "edge_errors" {
  project               = var.project_id
  display_name          = "tern ${var.environment}: the Gateway answers 5xx to over 1 % of requests"
  combiner              = "OR"
  notification_channels = local.channels
  severity              = "ERROR"

  conditions {
    display_name = "5xx above 1 % of the load balancer's requests for 10 minutes"
    condition_prometheus_query_language {
      query                     = "sum(rate(loadbalancing_googleapis_com:https_request_count{monitored_resource=\"https_lb_rule\",response_code_class=\"500\"}[5m])) / sum(rate(loadbalancing_googleapis_com:https_request_count{monitored_resource=\"https_lb_rule\"}[5m])) > 0.01"
      duration                  = "600s"
      evaluation_interval       = "60s"
      disable_metric_validation = true
    }
  }

  documentation {
    content   = "The public Gateway answers 5xx: a function failing (its availability alerts say which), or Knative's data plane (activator, queue-proxy) failing before a function answers. `kubectl -n knative-serving logs deploy/activator`; ${local.runbook}."
    mime_type = "text/markdown"
  }
}

# One dashboard per environment: the functions (Managed Prometheus, PromQL) beside Cloud SQL and
# Pub/Sub (Cloud Monitoring's own metrics).
locals {
  promql_tiles = [
    ["Requests per second by function", "sum by (function) (rate(http_server_request_duration_seconds_count{job=\"tern-functions\"}[5m]))"],
    ["5xx ratio by function", "sum by (function) (rate(http_server_request_duration_seconds_count{job=\"tern-functions\",http_response_status_code=~\"5..\"}[5m])) / sum by (function) (rate(http_server_request_duration_seconds_count{job=\"tern-functions\"}[5m]))"],
    ["p99 latency by route (s)", "histogram_quantile(0.99, sum by (function, http_route, le) (rate(http_server_request_duration_seconds_bucket{job=\"tern-functions\"}[5m])))"],
    ["Database pool: used ÷ max", "sum by (function) (db_client_connection_count{job=\"tern-functions\",db_client_connection_state=\"used\"}) / sum by (function) (db_client_connection_max{job=\"tern-functions\"})"],
    ["Outbox: oldest pending row (s)", "max(tern_outbox_oldest_pending_age_seconds{job=\"tern-functions\"})"],
    ["Events handled by outcome", "sum by (outcome) (rate(tern_events_handled_total{job=\"tern-functions\"}[5m]))"],
  ]
  filter_tiles = [
    ["Cloud SQL CPU", "metric.type=\"cloudsql.googleapis.com/database/cpu/utilization\" AND ${local.sql_filter}", "ALIGN_MEAN"],
    ["Cloud SQL connections", "metric.type=\"cloudsql.googleapis.com/database/postgresql/num_backends\" AND ${local.sql_filter}", "ALIGN_MEAN"],
    ["Pub/Sub oldest unacked message (s)", "metric.type=\"pubsub.googleapis.com/subscription/oldest_unacked_message_age\" AND resource.type=\"pubsub_subscription\"", "ALIGN_MAX"],
  ]
  tiles = concat(
    [for i, t in local.promql_tiles : {
      xPos   = (i % 2) * 24
      yPos   = floor(i / 2) * 16
      width  = 24
      height = 16
      widget = {
        title = t[0]
        xyChart = {
          dataSets = [{
            plotType        = "LINE"
            timeSeriesQuery = { prometheusQuery = t[1] }
          }]
        }
      }
    }],
    [for i, t in local.filter_tiles : {
      xPos   = (i % 2) * 24
      yPos   = (floor(length(local.promql_tiles) / 2) + floor(i / 2)) * 16
      width  = 24
      height = 16
      widget = {
        title = t[0]
        xyChart = {
          dataSets = [{
            plotType = "LINE"
            timeSeriesQuery = {
              timeSeriesFilter = {
                filter      = t[1]
                aggregation = { alignmentPeriod = "60s", perSeriesAligner = t[2] }
              }
            }
          }]
        }
      }
    }],
  )
}

resource "google_monitoring_dashboard" "tern" {
  project = var.project_id
  dashboard_json = jsonencode({
    displayName  = "tern ${var.environment}"
    mosaicLayout = { columns = 48, tiles = local.tiles }
  })
}
