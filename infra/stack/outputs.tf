# What the chart values, Argo CD and GitHub need (docs/deploy.md, docs/delivery.md).

output "project_id" {
  description = "The environment's project (chart gcp.project)."
  value       = var.project_id
}

output "clusters" {
  description = "cluster role -> {name, region, dns_endpoint}."
  value = merge(
    { primary = { name = module.gke.name, region = module.gke.location, dns_endpoint = module.gke.dns_endpoint } },
    var.standby == null ? {} : { standby = { name = module.gke_standby[0].name, region = module.gke_standby[0].location, dns_endpoint = module.gke_standby[0].dns_endpoint } },
  )
}

output "node_service_accounts" {
  description = "GKE node identities, which the shared registry must let pull (bootstrap registry_readers)."
  value       = concat([module.gke.node_service_account], [for g in module.gke_standby : g.node_service_account])
}

output "cloudsql_private_ip" {
  description = "Chart database.host (primary)."
  value       = module.cloudsql.private_ip
}

output "cloudsql_max_connections" {
  description = "Chart database.maxConnections: the budget the functions' pools must fit in."
  value       = var.database.max_connections
}

output "cloudsql_replica_private_ip" {
  description = "Chart database.host in env/prod-standby.yaml; null without a standby."
  value       = module.cloudsql.replica_private_ip
}

output "cloudsql_replica_server_ca" {
  description = "The standby chart's database.serverCa: the replica's own server CA, or null."
  value       = module.cloudsql.replica_server_ca_cert
  sensitive   = true
}

output "cloudsql_server_ca" {
  description = "Chart database.serverCa (tofu output -json tern | jq -r .cloudsql_server_ca)."
  value       = module.cloudsql.server_ca_cert
  sensitive   = true
}

output "cloudsql_instances" {
  description = "The writer (primary) and replica instance names, each instance's region, and what the replica replicates (scripts/failover, scripts/failback)."
  value = {
    primary        = module.cloudsql.instance_name
    replica        = module.cloudsql.replica_name
    regions        = module.cloudsql.regions
    replica_master = module.cloudsql.replica_master
  }
}

output "private_services_range" {
  description = "Chart networkPolicy.databaseCidr."
  value       = module.network.private_services_cidr
}

output "database_users" {
  description = "function -> its IAM database user (what it logs in as; the chart renders the same from its service account)."
  value       = { for f in local.database_functions : f => trimsuffix(module.identity.functions[f], ".gserviceaccount.com") }
}

output "generated_secrets" {
  description = "Secret Manager ids whose value scripts/secret-init generates (the others an operator provides)."
  value       = sort([for s in var.generated_secrets : local.secret_id[s] if contains(keys(local.secret_id), s)])
}

output "gateway" {
  description = "Platform values: gateway.addressName per cluster, certificateMap, securityPolicy, sslPolicy."
  value = {
    addresses       = module.edge.addresses
    certificate_map = module.edge.certificate_map
    security_policy = module.edge.security_policy
    ssl_policy      = module.edge.ssl_policy
  }
}

output "function_service_accounts" {
  description = "function -> Google service account (the chart's Workload Identity annotations)."
  value       = module.identity.functions
}

output "subscriptions" {
  description = "push subscription -> endpoint."
  value       = module.pubsub.subscriptions
}

output "name_servers" {
  description = "Delegate the domain to these."
  value       = module.dns.name_servers
}

output "dns_targets" {
  description = "host -> the Gateway (cluster role) its A record answers with: the active region's; standby_hosts always the standby's."
  value       = module.dns.targets
}

output "function_grants" {
  description = "function -> every role it holds, as role:resource (secrets it reads, topics it publishes to, the database it logs in to)."
  value = {
    for f in local.functions : f.name => sort(concat(
      [for k, v in local.accessors : "secretAccessor:${v.secret}" if endswith(k, "/${f.name}")],
      [for d in local.database_functions : "cloudsqlInstanceUser:${var.project_id}" if d == f.name],
      [for k, v in local.publishers : "publisher:${v.topic}" if endswith(k, "/${f.name}")],
    ))
  }
}

output "data_protection" {
  description = "Deletion protection where data lives: the database (and replica) and the cluster(s)."
  value = {
    cloudsql = module.cloudsql.deletion_protection
    clusters = concat([module.gke.deletion_protection], [for g in module.gke_standby : g.deletion_protection])
  }
}

output "schedules" {
  description = "Scheduler jobs -> URL, per region."
  value = {
    primary = module.scheduler.jobs
    standby = [for s in module.scheduler_standby : s.jobs]
  }
}

output "monitoring" {
  description = "The notification channels, the alert policies and the dashboard (docs/operations.md, \"Alerts and SLOs\")."
  value = {
    notification_channels = module.monitoring.notification_channels
    alert_policies        = module.monitoring.alert_policies
    dashboard             = module.monitoring.dashboard
  }
}
