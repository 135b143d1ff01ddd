mock_provider "google" {}
mock_provider "random" {}

variables {
  project_id = "tern-test"
  locations  = ["europe-west1", "europe-west4"]
  secrets = {
    web-csrf-secret       = { generate = true }
    orders-api-key-hashes = { generate = false }
  }
  accessors = {
    "tern-db-password/orders-get"       = { secret = "tern-db-password", member = "serviceAccount:fn-orders-get@tern-test.iam.gserviceaccount.com" }
    "orders-api-key-hashes/orders-list" = { secret = "orders-api-key-hashes", member = "serviceAccount:fn-orders-list@tern-test.iam.gserviceaccount.com" }
  }
}

run "every_secret_is_replicated_to_both_regions" {
  command = plan

  assert {
    condition     = toset(keys(google_secret_manager_secret.this)) == toset(["tern-db-password", "web-csrf-secret", "orders-api-key-hashes"])
    error_message = "the database password and the route table's secrets"
  }
  assert {
    condition = alltrue([for s in google_secret_manager_secret.this :
    toset([for r in s.replication[0].user_managed[0].replicas : r.location]) == toset(["europe-west1", "europe-west4"])])
    error_message = "each secret must have a replica in both regions, so it survives the loss of one"
  }
}

run "only_generated_secrets_get_a_version_and_access_is_per_secret" {
  command = plan

  assert {
    condition     = toset(keys(google_secret_manager_secret_version.generated)) == toset(["tern-db-password", "web-csrf-secret"])
    error_message = "operator-provided secrets get no generated value"
  }
  assert {
    condition     = google_secret_manager_secret_iam_member.accessor["orders-api-key-hashes/orders-list"].secret_id == "orders-api-key-hashes" && google_secret_manager_secret_iam_member.accessor["orders-api-key-hashes/orders-list"].role == "roles/secretmanager.secretAccessor"
    error_message = "each accessor reads only its secret"
  }
  assert {
    condition     = length(google_secret_manager_secret_iam_member.accessor) == 2
    error_message = "no access beyond what was asked"
  }
  assert {
    condition     = random_password.database.length == 40
    error_message = "a 40-character database password"
  }
}
