# The whole dev environment, planned against the real provider schemas with mocked APIs; the
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

run "dev_has_no_standby_region" {
  command = plan

  assert {
    condition     = keys(module.tern.clusters) == ["primary"]
    error_message = "dev has one cluster"
  }
  assert {
    condition     = module.tern.cloudsql_instances.replica == null && module.tern.cloudsql_replica_private_ip == null
    error_message = "dev has no replica"
  }
  assert {
    condition     = length(module.tern.schedules.standby) == 0
    error_message = "dev has no standby scheduler"
  }
}

run "data_is_protected_and_events_are_wired" {
  command = plan

  assert {
    condition     = module.tern.data_protection.cloudsql && alltrue(module.tern.data_protection.clusters)
    error_message = "deletion protection on the database and the cluster"
  }
  assert {
    condition     = module.tern.subscriptions == { "payments-events-payments" = "https://dev.orders.example.com/events/payments" }
    error_message = "the route table's subscription, pushed to dev's host"
  }
  assert {
    condition     = module.tern.function_grants["orders-get"] == tolist(["cloudsqlInstanceUser:tern-dev"])
    error_message = "orders-get only logs in to the database, as itself; it reads no secret"
  }
}
