output "instance_name" {
  description = "The primary instance's name."
  value       = google_sql_database_instance.primary.name
}

output "connection_name" {
  description = "project:region:instance."
  value       = google_sql_database_instance.primary.connection_name
}

output "private_ip" {
  description = "The primary's private IP (the functions' DB_HOST)."
  value       = google_sql_database_instance.primary.private_ip_address
}

output "server_ca_cert" {
  description = "PEM of the server CA (the chart's database.serverCa). Public, but the provider marks it sensitive."
  value       = google_sql_database_instance.primary.server_ca_cert[0].cert
  sensitive   = true
}

output "replica_name" {
  description = "The cross-region replica's name, or null."
  value       = one(google_sql_database_instance.replica[*].name)
}

output "regions" {
  description = "instance name -> its region (the writer, and the replica if any)."
  value = merge(
    { (google_sql_database_instance.primary.name) = google_sql_database_instance.primary.region },
    { for r in google_sql_database_instance.replica : r.name => r.region },
  )
}

output "replica_master" {
  description = "The instance the replica replicates from, or null."
  value       = one(google_sql_database_instance.replica[*].master_instance_name)
}

output "replica_server_ca_cert" {
  description = "PEM of the replica's server CA (the standby chart's database.serverCa: every instance has its own), or null."
  value       = one(google_sql_database_instance.replica[*].server_ca_cert[0].cert)
  sensitive   = true
}

output "replica_private_ip" {
  description = "The replica's private IP (the standby functions' DB_HOST), or null."
  value       = one(google_sql_database_instance.replica[*].private_ip_address)
}

output "deletion_protection" {
  description = "Whether the primary and the replica refuse deletion (OpenTofu and API)."
  value = alltrue(concat(
    [google_sql_database_instance.primary.deletion_protection, google_sql_database_instance.primary.settings[0].deletion_protection_enabled],
    [for r in google_sql_database_instance.replica : r.deletion_protection && r.settings[0].deletion_protection_enabled],
  ))
}
