# One environment of Tern: everything in its own project. The route table
# (knative/chart/tern-functions/files/routes.json, rendered from routes.toml) decides the
# functions, their identities and secrets, the topics, the push subscriptions and the schedules.

locals {
  table     = jsondecode(file("${path.module}/../../knative/chart/tern-functions/files/routes.json")).table
  functions = local.table.function
  topics    = [for t in local.table.topic : t.name]
  name      = "tern-${var.environment}"
  host      = var.hosts[0]
  regions   = var.standby == null ? [var.region] : [var.region, var.standby.region]

  # Secret settings (WEB_CSRF_SECRET) become Secret Manager ids (web-csrf-secret), as the chart does.
  secret_id = { for s in distinct(flatten([for f in local.functions : f.secrets])) : s => replace(lower(s), "_", "-") }

  subscriptions = flatten([
    for f in local.functions : [
      for s in f.subscriptions : {
        name     = "${f.name}-${s.topic}"
        topic    = s.topic
        endpoint = "https://${local.host}${s.path}"
        types    = s.types
      }
    ]
  ])

  schedules = [
    for f in local.functions : {
      name     = f.name
      schedule = f.schedule
      url      = "https://${local.host}${f.routes[0].path}"
    } if try(f.schedule, null) != null
  ]

  # Keys are known at plan time (names), members may not be (emails of new accounts).
  publishers = merge(
    merge([for f in local.functions : {
      for t in f.publishes : "${t}/${f.name}" => { topic = t, member = module.identity.members[f.name] }
    }]...),
    merge([for t, members in var.external_publishers : {
      for i, m in members : "${t}/external-${i}" => { topic = t, member = m }
    }]...),
  )

  accessors = merge([for f in local.functions : {
    for s in f.secrets : "${local.secret_id[s]}/${f.name}" => { secret = local.secret_id[s], member = module.identity.members[f.name] }
  }]...)

  # The functions that reach the database, which log in as themselves (IAM database
  # authentication; the migrate job is one of them).
  database_functions = [for f in local.functions : f.name if f.database]
  labels = {
    app         = "tern"
    environment = var.environment
  }
}

module "services" {
  source     = "../modules/project-services"
  project_id = var.project_id
}

# Binary Authorization: every cluster of the environment enforces this project policy
# (infra/modules/gke), which admits only images our build attested, and the listed platform ones.
module "binauthz" {
  source           = "../modules/binauthz-policy"
  project_id       = var.project_id
  attestor         = var.build_attestor
  own_registry     = var.image_repository
  enforcement_mode = var.binauthz_dry_run ? "DRYRUN_AUDIT_LOG_ONLY" : "ENFORCED_BLOCK_AND_AUDIT_LOG"
  depends_on       = [module.services]
}

module "network" {
  source                = "../modules/network"
  project_id            = var.project_id
  name                  = local.name
  subnets               = var.network.subnets
  private_services_cidr = var.network.private_services_cidr
  depends_on            = [module.services]
}

module "gke" {
  source              = "../modules/gke"
  project_id          = var.project_id
  name                = "${local.name}-primary"
  region              = var.region
  zones               = var.zones
  network             = module.network.network_id
  subnetwork          = module.network.subnets[var.region]
  node_pool           = var.node_pool
  deletion_protection = var.deletion_protection
  labels              = merge(local.labels, { cluster = "primary" })
}

module "gke_standby" {
  source              = "../modules/gke"
  count               = var.standby == null ? 0 : 1
  project_id          = var.project_id
  name                = "${local.name}-standby"
  region              = var.standby.region
  zones               = var.standby.zones
  network             = module.network.network_id
  subnetwork          = module.network.subnets[var.standby.region]
  deletion_protection = var.deletion_protection
  labels              = merge(local.labels, { cluster = "standby" })
  # Nodes for the platform and Argo CD only; functions wait at zero until failover.
  node_pool = merge(var.node_pool, { min_nodes = 3, max_nodes = var.node_pool.max_nodes })
}

module "identity" {
  source     = "../modules/identity"
  project_id = var.project_id
  functions  = [for f in local.functions : f.name]
  depends_on = [module.services]
}

module "secrets" {
  source     = "../modules/secrets"
  project_id = var.project_id
  locations  = local.regions
  secrets    = values(local.secret_id)
  accessors  = local.accessors
  depends_on = [module.services]
}

# Where the writable instance is: the primary region, or the standby's between a failover and the
# end of the failback (database_instances).
locals {
  database = var.database_instances != null ? var.database_instances : {
    writer        = local.name
    writer_region = "primary"
    replica       = "${local.name}-replica"
  }
  database_regions = {
    primary = var.region
    standby = var.standby == null ? null : var.standby.region
  }
  database_replica_region = var.standby == null ? null : local.database_regions[local.database.writer_region == "primary" ? "standby" : "primary"]
}

module "cloudsql" {
  source                      = "../modules/cloudsql"
  project_id                  = var.project_id
  name                        = local.database.writer
  region                      = local.database_regions[local.database.writer_region]
  network_id                  = module.network.network_id
  private_services_connection = module.network.private_services_connection
  tier                        = var.database.tier
  disk_size_gb                = var.database.disk_size_gb
  backup_retention_count      = var.database.backup_retention_count
  max_connections             = var.database.max_connections
  iam_service_accounts        = [for f in local.database_functions : module.identity.functions[f]]
  replica_region              = local.database_replica_region
  replica_name                = local.database.replica
  deletion_protection         = var.deletion_protection
}

module "pubsub" {
  source               = "../modules/pubsub"
  project_id           = var.project_id
  topics               = local.topics
  subscriptions        = local.subscriptions
  push_service_account = module.identity.push_service_account
  publishers           = local.publishers
  depends_on           = [module.services]
}

module "scheduler" {
  source          = "../modules/scheduler"
  project_id      = var.project_id
  region          = var.region
  jobs            = local.schedules
  service_account = module.identity.scheduler_service_account
  depends_on      = [module.services]
}

# The standby region's scheduler, paused: the failover runbook resumes it.
module "scheduler_standby" {
  source          = "../modules/scheduler"
  count           = var.standby == null ? 0 : 1
  project_id      = var.project_id
  region          = var.standby.region
  jobs            = [for j in local.schedules : merge(j, { name = "${j.name}-standby" })]
  service_account = module.identity.scheduler_service_account
  paused          = true
  depends_on      = [module.services]
}

module "edge" {
  source     = "../modules/edge"
  project_id = var.project_id
  name       = local.name
  hosts      = var.hosts
  clusters   = var.standby == null ? ["primary"] : ["primary", "standby"]
  push_paths = distinct(flatten([for f in local.functions : [for s in f.subscriptions : s.path]]))
  depends_on = [module.services]
}

module "dns" {
  source          = "../modules/dns"
  project_id      = var.project_id
  zone_name       = var.dns_zone.name
  dns_name        = var.dns_zone.dns_name
  hosts           = var.hosts
  primary_address = module.edge.addresses["primary"].address
  standby_address = var.standby == null ? null : module.edge.addresses["standby"].address
  standby_hosts   = var.standby_hosts
  active          = var.active_region
  alert_channels  = module.monitoring.notification_channels
  extra_records   = { for host, r in module.edge.dns_authorizations : "acme-${host}" => { name = r.name, type = "CNAME", rrdatas = [r.data] } }
  depends_on      = [module.services]
}

# Cloud SQL, Pub/Sub and GKE's nodes, watched by Cloud Monitoring, with the environment's
# notification channels (every policy's, and the uptime check's above) and its dashboard. The
# functions' own alerts are the chart's Rules (docs/operations.md, "Alerts and SLOs").
module "monitoring" {
  source                    = "../modules/monitoring"
  project_id                = var.project_id
  environment               = var.environment
  notification_emails       = var.alert_emails
  notification_channels     = var.alert_channels
  require_notifications     = var.environment == "prod"
  sql_instances             = compact([module.cloudsql.instance_name, module.cloudsql.replica_name])
  replica_instance          = module.cloudsql.replica_name
  max_connections           = var.database.max_connections
  push_subscriptions        = keys(module.pubsub.subscriptions)
  dead_letter_subscriptions = module.pubsub.dead_letter_subscriptions
  depends_on                = [module.services]
}
