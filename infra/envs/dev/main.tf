module "tern" {
  source = "../../stack"

  environment = "dev"
  project_id  = var.project_id
  region      = "europe-west1"
  zones       = ["europe-west1-b", "europe-west1-c", "europe-west1-d"]

  network = {
    subnets = {
      europe-west1 = { cidr = "10.10.0.0/20", pods_cidr = "10.40.0.0/16", services_cidr = "10.10.16.0/20" }
    }
    private_services_cidr = "10.10.32.0/20"
  }

  hosts               = var.hosts
  dns_zone            = var.dns_zone
  node_pool           = { machine_type = "e2-standard-2", min_nodes = 3, max_nodes = 6, spot = true }
  database            = { tier = "db-custom-1-3840", backup_retention_count = 7, max_connections = 200 }
  external_publishers = var.external_publishers
  alert_channels      = var.alert_channels
  alert_emails        = var.alert_emails

  # Binary Authorization: only images the images workflow attested (docs/delivery.md).
  build_attestor   = var.build_attestor
  image_repository = var.image_repository
}
