resource "google_sql_database_instance" "primary" {
  # checkov:skip=CKV_GCP_6:TLS is required for every connection (ssl_mode ENCRYPTED_ONLY) and clients verify the server CA; client certificates (the only mode this check accepts) would need a key per function, while identity is IAM database authentication (a short-lived token per workload identity) over a private IP.
  project             = var.project_id
  name                = var.name
  region              = var.region
  database_version    = var.database_version
  deletion_protection = var.deletion_protection

  settings {
    tier                        = var.tier
    availability_type           = "REGIONAL"
    edition                     = "ENTERPRISE"
    disk_type                   = "PD_SSD"
    disk_size                   = var.disk_size_gb
    disk_autoresize             = true
    deletion_protection_enabled = var.deletion_protection

    ip_configuration {
      ipv4_enabled                                  = false
      private_network                               = var.network_id
      ssl_mode                                      = "ENCRYPTED_ONLY"
      enable_private_path_for_google_cloud_services = true
    }

    backup_configuration {
      enabled                        = true
      start_time                     = "02:00"
      point_in_time_recovery_enabled = true
      transaction_log_retention_days = var.log_retention_days
      backup_retention_settings {
        retained_backups = var.backup_retention_count
        retention_unit   = "COUNT"
      }
    }

    maintenance_window {
      day          = var.maintenance_window.day
      hour         = var.maintenance_window.hour
      update_track = "stable"
    }

    insights_config {
      query_insights_enabled  = true
      query_string_length     = 1024
      record_application_tags = true
      record_client_address   = false
    }

    # The connection budget the chart checks its pools against (knative/chart/tern-functions,
    # database.maxConnections; tests/tests/deploy.rs compares the two).
    database_flags {
      name  = "max_connections"
      value = tostring(var.max_connections)
    }
    # The logging and audit flags the CIS checks ask for, and that an incident needs.
    database_flags {
      name  = "log_checkpoints"
      value = "on"
    }
    database_flags {
      name  = "log_connections"
      value = "on"
    }
    database_flags {
      name  = "log_disconnections"
      value = "on"
    }
    database_flags {
      name  = "log_lock_waits"
      value = "on"
    }
    database_flags {
      name  = "log_duration"
      value = "on"
    }
    database_flags {
      name  = "log_hostname"
      value = "on"
    }
    database_flags {
      name  = "log_min_messages"
      value = "error"
    }
    database_flags {
      name  = "log_min_error_statement"
      value = "error"
    }
    database_flags {
      name  = "log_temp_files"
      value = "0"
    }
    database_flags {
      name  = "log_min_duration_statement"
      value = "-1"
    }
    database_flags {
      name  = "log_statement"
      value = "ddl"
    }
    database_flags {
      name  = "cloudsql.enable_pgaudit"
      value = "on"
    }
    database_flags {
      name  = "pgaudit.log"
      value = "role,ddl"
    }
    # IAM database authentication: the functions log in as their own service accounts with a
    # short-lived token; no database password exists (docs/decisions/0027).
    database_flags {
      name  = "cloudsql.iam_authentication"
      value = "on"
    }

    user_labels = {
      app = "tern"
    }
  }

  depends_on = [var.private_services_connection]

  # disk_autoresize grows the disk; a configured size below the real one would make the plan
  # replace the instance (the failback moves instances between these two addresses).
  lifecycle {
    ignore_changes = [settings[0].disk_size]
  }
}

resource "google_sql_database" "app" {
  project  = var.project_id
  instance = google_sql_database_instance.primary.name
  name     = var.database_name
}

# One IAM database user per service account that connects (each function with a database and
# the migrate job): Cloud SQL names it by the email without ".gserviceaccount.com" and makes it a
# member of cloudsqliamserviceaccount, which the migrate job grants (migrations/0006). Users
# replicate to the replica with the rest of the instance.
resource "google_sql_user" "iam" {
  for_each = toset(var.iam_service_accounts)

  project  = var.project_id
  instance = google_sql_database_instance.primary.name
  name     = trimsuffix(each.value, ".gserviceaccount.com")
  type     = "CLOUD_IAM_SERVICE_ACCOUNT"
  # The migrate job's user owns every table, and PostgreSQL refuses to drop a role that owns
  # objects: a user removed from the list leaves the state, not the database (its IAM role
  # binding goes, so it can no longer log in).
  deletion_policy = "ABANDON"
}

# Logging in with a token needs cloudsql.instances.login.
resource "google_project_iam_member" "instance_user" {
  for_each = toset(var.iam_service_accounts)

  project = var.project_id
  role    = "roles/cloudsql.instanceUser"
  member  = "serviceAccount:${each.value}"
}

# The standby region's copy: asynchronous, read-only until promoted by the failover runbook.
resource "google_sql_database_instance" "replica" {
  # checkov:skip=CKV_GCP_6:As the primary: TLS required (ENCRYPTED_ONLY), server CA verified, IAM database authentication; no client certificates.
  count = var.replica_region == null ? 0 : 1

  project              = var.project_id
  name                 = coalesce(var.replica_name, "${var.name}-replica")
  region               = var.replica_region
  database_version     = var.database_version
  master_instance_name = google_sql_database_instance.primary.name
  deletion_protection  = var.deletion_protection

  replica_configuration {
    failover_target = false
  }

  settings {
    tier                        = var.tier
    availability_type           = "ZONAL"
    edition                     = "ENTERPRISE"
    disk_type                   = "PD_SSD"
    disk_autoresize             = true
    deletion_protection_enabled = var.deletion_protection

    ip_configuration {
      ipv4_enabled    = false
      private_network = var.network_id
      ssl_mode        = "ENCRYPTED_ONLY"
    }

    insights_config {
      query_insights_enabled = true
    }

    # The logging and audit flags the CIS checks ask for, and that an incident needs: the same
    # as the primary's, written out because checkov (3.3.30) does not resolve a `dynamic` block
    # built from a local (tried: 8 checks per instance then fail). A replica must allow at
    # least the primary's max_connections (a PostgreSQL hot standby refuses to start otherwise),
    # and after a failover it serves the same pools.
    database_flags {
      name  = "max_connections"
      value = tostring(var.max_connections)
    }
    database_flags {
      name  = "log_checkpoints"
      value = "on"
    }
    database_flags {
      name  = "log_connections"
      value = "on"
    }
    database_flags {
      name  = "log_disconnections"
      value = "on"
    }
    database_flags {
      name  = "log_lock_waits"
      value = "on"
    }
    database_flags {
      name  = "log_duration"
      value = "on"
    }
    database_flags {
      name  = "log_hostname"
      value = "on"
    }
    database_flags {
      name  = "log_min_messages"
      value = "error"
    }
    database_flags {
      name  = "log_min_error_statement"
      value = "error"
    }
    database_flags {
      name  = "log_temp_files"
      value = "0"
    }
    database_flags {
      name  = "log_min_duration_statement"
      value = "-1"
    }
    database_flags {
      name  = "log_statement"
      value = "ddl"
    }
    database_flags {
      name  = "cloudsql.enable_pgaudit"
      value = "on"
    }
    database_flags {
      name  = "pgaudit.log"
      value = "role,ddl"
    }
    # IAM database authentication: the functions log in as their own service accounts with a
    # short-lived token; no database password exists (docs/decisions/0027).
    database_flags {
      name  = "cloudsql.iam_authentication"
      value = "on"
    }

    user_labels = {
      app = "tern"
    }
  }

  # disk_autoresize grows the disk; a configured size below the real one would make the plan
  # replace the instance (the failback moves instances between these two addresses).
  lifecycle {
    ignore_changes = [settings[0].disk_size]
  }
}
