# The whole prod environment, planned against the real provider schemas with mocked APIs; the
# inputs are terraform.tfvars.
mock_provider "google" {
  mock_resource "google_service_account" {
    defaults = {
      name  = "projects/tern-test/serviceAccounts/mock-account@tern-test.iam.gserviceaccount.com"
      email = "mock-account@tern-test.iam.gserviceaccount.com"
    }
  }
  mock_resource "google_compute_network" {
    defaults = {
      id = "projects/tern-test/global/networks/mock-network"
    }
  }
  mock_resource "google_sql_database_instance" {
    defaults = {
      server_ca_cert     = [{ cert = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n", common_name = "mock", create_time = "", expiration_time = "", sha1_fingerprint = "" }]
      private_ip_address = "10.30.32.3"
    }
  }
  mock_resource "google_certificate_manager_dns_authorization" {
    defaults = {
      dns_resource_record = [{ name = "_acme-challenge.orders.example.com.", type = "CNAME", data = "mock.authorize.certificatemanager.goog." }]
    }
  }
  mock_data "google_project" {
    defaults = {
      number = "123456789012"
    }
  }
}

run "prod_has_a_standby_region" {
  command = plan

  assert {
    condition     = toset(keys(module.tern.clusters)) == toset(["primary", "standby"])
    error_message = "prod needs the standby cluster"
  }
  assert {
    condition     = module.tern.clusters["standby"].region == "europe-west4" && module.tern.clusters["primary"].region == "europe-west1"
    error_message = "the clusters are in two regions"
  }
  assert {
    condition     = module.tern.cloudsql_instances.replica == "tern-prod-replica"
    error_message = "prod needs the cross-region replica"
  }
  assert {
    condition     = length(module.tern.schedules.standby) == 1
    error_message = "a (paused) scheduler waits in the standby region"
  }
}

run "the_standby_test_host_reaches_the_standby_gateway" {
  command = plan

  assert {
    condition     = module.tern.dns_targets["orders.example.com"] == "primary" && module.tern.dns_targets["standby.orders.example.com"] == "standby" && length(module.tern.dns_targets) == 2
    error_message = "standby.orders.example.com answers with the standby Gateway (decision 0012: the standby is tested on its own host), orders.example.com with the primary's until a failover"
  }
}

run "after_a_failover_every_host_reaches_the_standby_gateway" {
  command = plan
  variables {
    active_region = "standby"
  }

  assert {
    condition     = module.tern.dns_targets["orders.example.com"] == "standby" && module.tern.dns_targets["standby.orders.example.com"] == "standby"
    error_message = "active_region = standby points the public host at the standby Gateway"
  }
}

run "the_writer_is_in_the_primary_region_and_its_replica_in_the_standby" {
  command = plan

  assert {
    condition     = module.tern.cloudsql_instances.regions["tern-prod"] == "europe-west1" && module.tern.cloudsql_instances.regions["tern-prod-replica"] == "europe-west4" && length(module.tern.cloudsql_instances.regions) == 2 && module.tern.cloudsql_instances.replica_master == "tern-prod"
    error_message = "tern-prod writes in europe-west1; tern-prod-replica replicates it in europe-west4"
  }
}

# The failback's step 2 (scripts/failback): the promoted replica is the writer, in the standby
# region, and a new replica (a new name) replicates it in the primary region.
run "a_failback_builds_a_new_replica_in_the_primary_region" {
  command = plan
  variables {
    database_instances = { writer = "tern-prod-replica", writer_region = "standby", replica = "tern-prod-b" }
    active_region      = "standby"
  }

  assert {
    condition     = module.tern.cloudsql_instances.primary == "tern-prod-replica" && module.tern.cloudsql_instances.replica == "tern-prod-b"
    error_message = "the writer is the promoted instance, the replica a new one"
  }
  assert {
    condition     = module.tern.cloudsql_instances.regions["tern-prod-replica"] == "europe-west4" && module.tern.cloudsql_instances.regions["tern-prod-b"] == "europe-west1" && length(module.tern.cloudsql_instances.regions) == 2 && module.tern.cloudsql_instances.replica_master == "tern-prod-replica"
    error_message = "the new replica replicates the promoted instance, in the primary region"
  }
}

# Its step 5 done: the new replica promoted writes in the primary region again, and the standby
# gets a fresh replica (a third name).
run "after_the_failback_the_writer_is_back_in_the_primary_region" {
  command = plan
  variables {
    database_instances = { writer = "tern-prod-b", writer_region = "primary", replica = "tern-prod-b-replica" }
  }

  assert {
    condition     = module.tern.cloudsql_instances.regions["tern-prod-b"] == "europe-west1" && module.tern.cloudsql_instances.regions["tern-prod-b-replica"] == "europe-west4" && length(module.tern.cloudsql_instances.regions) == 2 && module.tern.cloudsql_instances.replica_master == "tern-prod-b"
    error_message = "writer in europe-west1, replica in europe-west4"
  }
}

run "data_is_protected_and_identities_hold_only_their_roles" {
  command = plan

  assert {
    condition     = module.tern.data_protection.cloudsql && alltrue(module.tern.data_protection.clusters)
    error_message = "deletion protection on the database, the replica and both clusters"
  }
  assert {
    condition     = module.tern.function_grants["orders-get"] == tolist(["cloudsqlInstanceUser:tern-prod"])
    error_message = "orders-get only logs in to the database, as itself; it reads no secret"
  }
  assert {
    condition     = module.tern.function_grants["orders-list"] == tolist(["cloudsqlInstanceUser:tern-prod", "secretAccessor:orders-api-key-hashes"])
    error_message = "orders-list logs in to the database and reads its API key hashes"
  }
  assert {
    condition     = module.tern.function_grants["web"] == tolist(["cloudsqlInstanceUser:tern-prod", "publisher:orders", "secretAccessor:web-csrf-secret"])
    error_message = "web logs in to the database, publishes orders and reads its CSRF secret"
  }
  assert {
    condition     = module.tern.function_grants["payments-events"] == tolist(["cloudsqlInstanceUser:tern-prod", "publisher:orders"])
    error_message = "payments-events logs in to the database and publishes orders, nothing on payments"
  }
  assert {
    condition     = module.tern.function_grants["migrate"] == tolist(["cloudsqlInstanceUser:tern-prod"])
    error_message = "migrate only logs in to the database"
  }
}

run "events_reach_consumers_through_authenticated_push" {
  command = plan

  assert {
    condition     = module.tern.subscriptions == { "payments-events-payments" = "https://orders.example.com/events/payments" }
    error_message = "the route table's subscription, pushed to the public host"
  }
  assert {
    condition     = module.tern.schedules.primary == { "outbox-relay" = "https://orders.example.com/internal/outbox/flush" }
    error_message = "the route table's schedule"
  }
}

run "prod_alerts_reach_someone_and_watch_the_replica" {
  command = plan

  assert {
    condition     = module.tern.monitoring.alert_policies.replica_lag == "tern prod: Cloud SQL replica lag above 60 s"
    error_message = "prod watches its replica's lag"
  }
  assert {
    condition     = length(module.tern.monitoring.alert_policies) == 9
    error_message = "Cloud SQL CPU, connections, replica lag, dead letters, oldest unacked, GKE nodes, the Gateway's 5xx, the functions' page and ticket alerts"
  }
}

run "prod_refuses_alerts_nobody_receives" {
  command = plan
  variables {
    alert_emails   = []
    alert_channels = []
  }
  expect_failures = [var.alert_emails]
}
