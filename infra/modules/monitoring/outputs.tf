output "notification_channels" {
  description = "Every channel the policies notify."
  value       = local.channels
}

output "alert_policies" {
  description = "Policy key -> display name."
  value = merge(
    {
      sql_cpu          = google_monitoring_alert_policy.sql_cpu.display_name
      sql_connections  = google_monitoring_alert_policy.sql_connections.display_name
      dead_letters     = google_monitoring_alert_policy.dead_letters.display_name
      oldest_unacked   = google_monitoring_alert_policy.oldest_unacked.display_name
      gke_nodes        = google_monitoring_alert_policy.gke_nodes.display_name
      edge_errors      = google_monitoring_alert_policy.edge_errors.display_name
      functions_page   = google_monitoring_alert_policy.functions["page"].display_name
      functions_ticket = google_monitoring_alert_policy.functions["ticket"].display_name
    },
    { for p in google_monitoring_alert_policy.replica_lag : "replica_lag" => p.display_name },
  )
}

output "dashboard" {
  description = "The dashboard's id."
  value       = google_monitoring_dashboard.tern.id
}
