module "tern" {
  source = "../../stack"

  environment = "prod"
  project_id  = var.project_id
  region      = "europe-west1"
  zones       = ["europe-west1-b", "europe-west1-c", "europe-west1-d"]
  # The standby region: a second cluster at scale zero, the Cloud SQL replica, replicated
  # secrets, a paused scheduler and DNS failover (docs/operations.md, "Region failover").
  standby = {
    region = "europe-west4"
    zones  = ["europe-west4-a", "europe-west4-b", "europe-west4-c"]
  }

  network = {
    subnets = {
      europe-west1 = { cidr = "10.30.0.0/20", pods_cidr = "10.120.0.0/16", services_cidr = "10.30.16.0/20" }
      europe-west4 = { cidr = "10.30.64.0/20", pods_cidr = "10.130.0.0/16", services_cidr = "10.30.80.0/20" }
    }
    private_services_cidr = "10.30.32.0/20"
  }

  hosts               = var.hosts
  standby_hosts       = var.standby_hosts
  database_instances  = var.database_instances
  dns_zone            = var.dns_zone
  node_pool           = { machine_type = "e2-standard-4", min_nodes = 3, max_nodes = 12 }
  database            = { tier = "db-custom-2-8192", backup_retention_count = 30, max_connections = 400 }
  external_publishers = var.external_publishers
  active_region       = var.active_region
  alert_channels      = var.alert_channels
  alert_emails        = var.alert_emails

  # Binary Authorization: only images the images workflow attested (docs/delivery.md).
  build_attestor   = var.build_attestor
  image_repository = var.image_repository
}
