mock_provider "google" {
  mock_resource "google_sql_database_instance" {
    defaults = {
      server_ca_cert     = [{ cert = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n", common_name = "mock", create_time = "", expiration_time = "", sha1_fingerprint = "" }]
      private_ip_address = "10.30.32.3"
    }
  }
}

variables {
  project_id                  = "tern-test"
  name                        = "tern-test"
  region                      = "europe-west1"
  network_id                  = "projects/tern-test/global/networks/tern-test"
  private_services_connection = "connection"
  iam_service_accounts = [
    "fn-orders-get@tern-test.iam.gserviceaccount.com",
    "fn-migrate@tern-test.iam.gserviceaccount.com",
  ]
}

run "private_ip_only_tls_ha_backups_pitr_and_protected" {
  command = plan

  assert {
    condition     = google_sql_database_instance.primary.settings[0].ip_configuration[0].ipv4_enabled == false
    error_message = "no public IP"
  }
  assert {
    condition     = google_sql_database_instance.primary.settings[0].ip_configuration[0].ssl_mode == "ENCRYPTED_ONLY"
    error_message = "TLS enforced"
  }
  assert {
    condition     = google_sql_database_instance.primary.settings[0].availability_type == "REGIONAL"
    error_message = "regional HA"
  }
  assert {
    condition = (google_sql_database_instance.primary.settings[0].backup_configuration[0].enabled &&
      google_sql_database_instance.primary.settings[0].backup_configuration[0].point_in_time_recovery_enabled &&
    google_sql_database_instance.primary.settings[0].backup_configuration[0].backup_retention_settings[0].retained_backups == 14)
    error_message = "backups with PITR and retention"
  }
  assert {
    condition     = google_sql_database_instance.primary.deletion_protection && google_sql_database_instance.primary.settings[0].deletion_protection_enabled
    error_message = "deletion protection in OpenTofu and in the API"
  }
  assert {
    condition     = google_sql_database_instance.primary.settings[0].insights_config[0].query_insights_enabled
    error_message = "query insights"
  }
  assert {
    condition = alltrue([for f in ["log_checkpoints", "log_connections", "log_disconnections", "log_lock_waits"] :
    contains([for d in google_sql_database_instance.primary.settings[0].database_flags : d.name if d.value == "on"], f)])
    error_message = "the logging flags must be on"
  }
  assert {
    condition     = length(google_sql_database_instance.replica) == 0
    error_message = "no replica unless asked for"
  }
}

run "the_standby_region_gets_a_protected_private_replica" {
  command = plan
  variables {
    replica_region = "europe-west4"
  }

  assert {
    condition     = google_sql_database_instance.replica[0].region == "europe-west4" && google_sql_database_instance.replica[0].master_instance_name == "tern-test"
    error_message = "a cross-region replica of the primary"
  }
  assert {
    condition     = google_sql_database_instance.replica[0].settings[0].ip_configuration[0].ipv4_enabled == false && google_sql_database_instance.replica[0].deletion_protection
    error_message = "the replica is private and protected too"
  }
}

run "short_backup_retention_is_refused" {
  command = plan
  variables {
    backup_retention_count = 3
  }
  expect_failures = [var.backup_retention_count]
}

run "functions_log_in_with_iam_and_no_password_user_exists" {
  command = plan
  variables {
    replica_region = "europe-west4"
  }

  assert {
    condition = length(google_sql_database_instance.replica) == 1 && alltrue([for i in concat([google_sql_database_instance.primary], google_sql_database_instance.replica) :
    contains([for d in i.settings[0].database_flags : d.name if d.value == "on"], "cloudsql.iam_authentication")])
    error_message = "IAM database authentication on the primary and the replica (which becomes the primary)"
  }
  assert {
    condition     = toset([for u in google_sql_user.iam : u.name]) == toset(["fn-orders-get@tern-test.iam", "fn-migrate@tern-test.iam"])
    error_message = "one IAM user per service account, named as Cloud SQL names them"
  }
  assert {
    condition     = alltrue([for u in google_sql_user.iam : u.type == "CLOUD_IAM_SERVICE_ACCOUNT" && u.password == null && u.deletion_policy == "ABANDON"])
    error_message = "IAM service-account users, with no password, never dropped from the database (the migrate user owns the tables)"
  }
  assert {
    condition     = toset([for m in google_project_iam_member.instance_user : "${m.role} ${m.member}"]) == toset(["roles/cloudsql.instanceUser serviceAccount:fn-orders-get@tern-test.iam.gserviceaccount.com", "roles/cloudsql.instanceUser serviceAccount:fn-migrate@tern-test.iam.gserviceaccount.com"])
    error_message = "each may log in (cloudsql.instances.login), nothing more"
  }
}

run "a_user_email_must_be_a_service_account" {
  command = plan
  variables {
    iam_service_accounts = ["someone@example.com"]
  }
  expect_failures = [var.iam_service_accounts]
}
