variable "project_id" {
  description = "The project of the instance."
  type        = string
}

variable "name" {
  description = "The instance's name (tern-<env>); the replica is <name>-replica."
  type        = string
  validation {
    condition     = can(regex("^[a-z][-a-z0-9]{0,78}[a-z0-9]$", var.name))
    error_message = "name must be lowercase letters, digits and hyphens."
  }
}

variable "region" {
  description = "The primary region."
  type        = string
}

variable "network_id" {
  description = "The VPC whose private services access range gives the instance its only IP."
  type        = string
}

variable "private_services_connection" {
  description = "The private services connection the instance depends on (network module output)."
  type        = string
}

variable "database_version" {
  description = "PostgreSQL major version."
  type        = string
  default     = "POSTGRES_18"
  validation {
    condition     = can(regex("^POSTGRES_1[5-9]$", var.database_version))
    error_message = "database_version must be POSTGRES_15 or later."
  }
}

variable "tier" {
  description = "Machine tier."
  type        = string
  default     = "db-custom-2-8192"
}

variable "max_connections" {
  description = "PostgreSQL max_connections on the primary and the replica: what the chart's pools (max instances x pool size per function, plus a reserve) must fit in."
  type        = number
  default     = 400
  validation {
    condition     = var.max_connections >= 50 && var.max_connections <= 4000
    error_message = "max_connections must be between 50 and 4000."
  }
}

variable "disk_size_gb" {
  description = "Initial disk size; it grows automatically."
  type        = number
  default     = 20
  validation {
    condition     = var.disk_size_gb >= 10
    error_message = "disk_size_gb must be at least 10."
  }
}

variable "backup_retention_count" {
  description = "How many daily backups to keep."
  type        = number
  default     = 14
  validation {
    condition     = var.backup_retention_count >= 7 && var.backup_retention_count <= 365
    error_message = "backup_retention_count must be between 7 and 365."
  }
}

variable "log_retention_days" {
  description = "Days of write-ahead log kept for point-in-time recovery."
  type        = number
  default     = 7
  validation {
    condition     = var.log_retention_days >= 1 && var.log_retention_days <= 7
    error_message = "log_retention_days must be between 1 and 7."
  }
}

variable "maintenance_window" {
  description = "Weekly maintenance: day (1 = Monday) and hour (UTC)."
  type = object({
    day  = number
    hour = number
  })
  default = {
    day  = 7
    hour = 3
  }
  validation {
    condition     = var.maintenance_window.day >= 1 && var.maintenance_window.day <= 7 && var.maintenance_window.hour >= 0 && var.maintenance_window.hour <= 23
    error_message = "maintenance_window needs day 1-7 and hour 0-23."
  }
}

variable "database_name" {
  description = "The application database."
  type        = string
  default     = "tern"
}

variable "iam_service_accounts" {
  description = "Emails of the service accounts that log in to the database with IAM database authentication (each function with a database, and the migrate job). No password user exists."
  type        = list(string)
  default     = []
  validation {
    condition     = alltrue([for e in var.iam_service_accounts : endswith(e, ".iam.gserviceaccount.com")])
    error_message = "iam_service_accounts must be service-account emails (NAME@PROJECT.iam.gserviceaccount.com)."
  }
}

variable "replica_region" {
  description = "When set, a cross-region read replica in this region (prod: the standby region), promoted on failover."
  type        = string
  default     = null
}

variable "replica_name" {
  description = "The replica's instance name; null: <name>-replica. A failback's new replica needs a new name (Cloud SQL keeps a deleted name for a week; the old primary is kept stopped until checked)."
  type        = string
  default     = null
}

variable "deletion_protection" {
  description = "Refuse to delete the instance (and the replica), both in OpenTofu and in the Cloud SQL API."
  type        = bool
  default     = true
}
