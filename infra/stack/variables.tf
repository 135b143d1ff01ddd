variable "environment" {
  description = "dev, staging or prod."
  type        = string
  validation {
    condition     = contains(["dev", "staging", "prod"], var.environment)
    error_message = "environment must be dev, staging or prod."
  }
}

variable "project_id" {
  description = "The environment's own project (separate per environment)."
  type        = string
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a Google Cloud project id."
  }
}

variable "region" {
  description = "The primary region."
  type        = string
}

variable "zones" {
  description = "The primary region's three zones."
  type        = list(string)
}

variable "standby" {
  description = "The standby region (prod): a second cluster at scale zero, the Cloud SQL replica, replicated secrets, DNS failover. null elsewhere."
  type = object({
    region = string
    zones  = list(string)
  })
  default = null
}

variable "network" {
  description = "Address plan: a subnet per region (nodes, pods, services) and the private services range for Cloud SQL."
  type = object({
    subnets = map(object({
      cidr          = string
      pods_cidr     = string
      services_cidr = string
    }))
    private_services_cidr = string
  })
}

variable "hosts" {
  description = "Public host names of the environment (the first one is what push subscriptions and the scheduler call)."
  type        = list(string)
}

variable "database_instances" {
  description = <<-EOT
    The Cloud SQL instances: the writer's name and the region role it lives in (primary or
    standby), and its cross-region replica's name (in the other region). null: tern-<env> in the
    primary region, tern-<env>-replica in the standby's. Only the failover and failback runbooks
    change it (docs/operations.md, "Region failover": after a failover the promoted replica is
    the writer, in the standby region, and the failback's new replica needs a new name).
  EOT
  type = object({
    writer        = string
    writer_region = string
    replica       = string
  })
  default = null
  validation {
    condition     = var.database_instances == null || contains(["primary", "standby"], try(var.database_instances.writer_region, ""))
    error_message = "database_instances.writer_region must be primary or standby."
  }
  validation {
    condition     = var.database_instances == null || try(var.database_instances.writer_region, "") != "standby" || var.standby != null
    error_message = "database_instances.writer_region = standby needs a standby region."
  }
}

variable "standby_hosts" {
  description = "Hosts (among hosts) that always answer with the standby region's Gateway: its own test host (needs standby)."
  type        = list(string)
  default     = []
}

variable "dns_zone" {
  description = "The public zone the hosts live in."
  type = object({
    name     = string
    dns_name = string
  })
}

variable "node_pool" {
  description = "GKE node pool sizing (per cluster)."
  type = object({
    machine_type = optional(string, "e2-standard-4")
    disk_size_gb = optional(number, 50)
    min_nodes    = optional(number, 3)
    max_nodes    = optional(number, 12)
    spot         = optional(bool, false)
  })
  default = {}
}

variable "database" {
  description = "Cloud SQL sizing and retention."
  type = object({
    tier                   = optional(string, "db-custom-2-8192")
    disk_size_gb           = optional(number, 20)
    backup_retention_count = optional(number, 14)
    max_connections        = optional(number, 400)
  })
  default = {}
}

variable "generated_secrets" {
  description = "Route-table secrets whose value scripts/secret-init generates (random) rather than an operator provides; OpenTofu creates every secret without a value."
  type        = list(string)
  default     = ["WEB_CSRF_SECRET"]
}

variable "external_publishers" {
  description = "Topic -> members outside Tern that publish to it (the payment provider's integration on payments)."
  type        = map(list(string))
  default     = {}
}

variable "active_region" {
  description = "Which region's Gateway the public hosts answer with: primary, or standby after a failover."
  type        = string
  default     = "primary"
}

variable "alert_channels" {
  description = "Existing Cloud Monitoring notification channels (ids) every alert notifies: the uptime check's and the monitoring module's."
  type        = list(string)
  default     = []
}

variable "alert_emails" {
  description = "Addresses an email notification channel is made for; every alert notifies them. prod needs this or alert_channels."
  type        = list(string)
  default     = []
}

variable "deletion_protection" {
  description = "Protect the cluster(s) and the database from deletion."
  type        = bool
  default     = true
}

variable "build_attestor" {
  description = "The attestor every image must be attested by (infra/bootstrap output build_attestor)."
  type        = string
}

variable "image_repository" {
  description = "The functions' image repository (the chart's images.repository; infra/bootstrap output registry)."
  type        = string
}

variable "binauthz_dry_run" {
  description = "Binary Authorization logs instead of refusing unattested images: only while an existing environment's running digests are attested (infra/README.md)."
  type        = bool
  default     = false
}
