mock_provider "google" {}

variables {
  project_id                = "tern-test"
  environment               = "prod"
  notification_emails       = ["oncall@example.com"]
  require_notifications     = true
  sql_instances             = ["tern-prod-pg", "tern-prod-pg-replica"]
  replica_instance          = "tern-prod-pg-replica"
  max_connections           = 400
  push_subscriptions        = ["payments-to-payments-events"]
  dead_letter_subscriptions = ["payments-dead-letter-inspect", "orders-dead-letter-inspect"]
}

run "every_policy_notifies_the_environment_s_channels" {
  command = apply

  assert {
    condition     = length(google_monitoring_notification_channel.email) == 1 && google_monitoring_notification_channel.email["oncall@example.com"].labels.email_address == "oncall@example.com"
    error_message = "one email channel per address"
  }
  assert {
    condition = alltrue([
      for p in [
        google_monitoring_alert_policy.sql_cpu,
        google_monitoring_alert_policy.sql_connections,
        google_monitoring_alert_policy.replica_lag[0],
        google_monitoring_alert_policy.dead_letters,
        google_monitoring_alert_policy.oldest_unacked,
        google_monitoring_alert_policy.gke_nodes,
        google_monitoring_alert_policy.edge_errors,
        google_monitoring_alert_policy.functions["page"],
        google_monitoring_alert_policy.functions["ticket"],
      ] : length(p.notification_channels) == 1 && contains(p.notification_channels, google_monitoring_notification_channel.email["oncall@example.com"].id) && strcontains(p.documentation[0].content, "docs/operations.md")
    ])
    error_message = "every policy notifies the channel and names its runbook"
  }
}

run "the_conditions_watch_what_the_cluster_cannot_see" {
  command = plan

  assert {
    condition     = strcontains(google_monitoring_alert_policy.sql_cpu.conditions[0].condition_threshold[0].filter, "one_of(\"tern-test:tern-prod-pg\",\"tern-test:tern-prod-pg-replica\")")
    error_message = "CPU is watched on the writer and the replica"
  }
  assert {
    condition     = google_monitoring_alert_policy.sql_connections.conditions[0].condition_threshold[0].threshold_value == 320
    error_message = "connections alert at 80 % of max_connections"
  }
  assert {
    condition     = strcontains(google_monitoring_alert_policy.replica_lag[0].conditions[0].condition_threshold[0].filter, "database_id=\"tern-test:tern-prod-pg-replica\"") && google_monitoring_alert_policy.replica_lag[0].conditions[0].condition_threshold[0].threshold_value == 60
    error_message = "the replica's lag alerts above 60 s"
  }
  assert {
    condition     = strcontains(google_monitoring_alert_policy.dead_letters.conditions[0].condition_threshold[0].filter, "\"orders-dead-letter-inspect\"") && google_monitoring_alert_policy.dead_letters.conditions[0].condition_threshold[0].threshold_value == 0
    error_message = "any message in a dead-letter subscription alerts"
  }
  assert {
    condition     = strcontains(google_monitoring_alert_policy.oldest_unacked.conditions[0].condition_threshold[0].filter, "oldest_unacked_message_age") && google_monitoring_alert_policy.oldest_unacked.conditions[0].condition_threshold[0].threshold_value == 600
    error_message = "push subscriptions alert when a delivery waits over 10 minutes"
  }
  assert {
    condition     = length(google_monitoring_alert_policy.gke_nodes.conditions) == 3 && google_monitoring_alert_policy.gke_nodes.conditions[2].condition_absent[0].duration == "600s"
    error_message = "nodes: memory, CPU, and a cluster whose nodes stop reporting"
  }
}

run "the_functions_alerts_reach_the_channels_by_severity" {
  command = plan

  assert {
    condition     = google_monitoring_alert_policy.functions["page"].conditions[0].condition_prometheus_query_language[0].query == "ALERTS{alertstate=\"firing\",severity=\"page\",namespace=\"tern\"}" && google_monitoring_alert_policy.functions["page"].severity == "CRITICAL"
    error_message = "firing page alerts of the chart's rules become critical incidents"
  }
  assert {
    condition     = google_monitoring_alert_policy.functions["ticket"].severity == "WARNING" && strcontains(google_monitoring_alert_policy.functions["ticket"].conditions[0].condition_prometheus_query_language[0].query, "severity=\"ticket\"")
    error_message = "ticket alerts become warnings"
  }
  assert {
    condition     = strcontains(google_monitoring_alert_policy.edge_errors.conditions[0].condition_prometheus_query_language[0].query, "response_code_class=\"500\"") && google_monitoring_alert_policy.edge_errors.conditions[0].condition_prometheus_query_language[0].duration == "600s"
    error_message = "the Gateway's 5xx ratio is watched where users are"
  }
}

run "one_dashboard_shows_the_functions_the_database_and_pub_sub" {
  command = plan

  assert {
    condition     = jsondecode(google_monitoring_dashboard.tern.dashboard_json).displayName == "tern prod"
    error_message = "the dashboard is named after the environment"
  }
  assert {
    condition     = length(jsondecode(google_monitoring_dashboard.tern.dashboard_json).mosaicLayout.tiles) == 9
    error_message = "six PromQL tiles and three Cloud Monitoring tiles"
  }
  assert {
    condition = contains(
      [for t in jsondecode(google_monitoring_dashboard.tern.dashboard_json).mosaicLayout.tiles : t.widget.title],
      "Outbox: oldest pending row (s)"
    )
    error_message = "the outbox backlog is on the dashboard"
  }
}

run "prod_refuses_a_plan_nobody_would_be_paged_by" {
  command = plan
  variables {
    notification_emails = []
  }
  expect_failures = [var.notification_emails]
}

run "an_environment_without_a_replica_has_no_lag_alert" {
  command = plan
  variables {
    environment           = "dev"
    require_notifications = false
    notification_emails   = []
    sql_instances         = ["tern-dev-pg"]
    replica_instance      = null
  }

  assert {
    condition     = length(google_monitoring_alert_policy.replica_lag) == 0 && length(google_monitoring_notification_channel.email) == 0
    error_message = "no replica, no lag alert; dev may run without channels"
  }
}

run "addresses_are_checked" {
  command = plan
  variables {
    notification_emails = ["oncall"]
  }
  expect_failures = [var.notification_emails]
}
