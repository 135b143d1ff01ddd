mock_provider "google" {}

variables {
  project_id = "tern-test"
  locations  = ["europe-west1", "europe-west4"]
  secrets    = ["web-csrf-secret", "orders-api-key-hashes"]
  accessors = {
    "web-csrf-secret/web"               = { secret = "web-csrf-secret", member = "serviceAccount:fn-web@tern-test.iam.gserviceaccount.com" }
    "orders-api-key-hashes/orders-list" = { secret = "orders-api-key-hashes", member = "serviceAccount:fn-orders-list@tern-test.iam.gserviceaccount.com" }
  }
}

run "every_secret_is_replicated_to_both_regions" {
  command = plan

  assert {
    condition     = toset(keys(google_secret_manager_secret.this)) == toset(["web-csrf-secret", "orders-api-key-hashes"])
    error_message = "the route table's secrets, and no database password"
  }
  assert {
    condition = alltrue([for s in google_secret_manager_secret.this :
    toset([for r in s.replication[0].user_managed[0].replicas : r.location]) == toset(["europe-west1", "europe-west4"])])
    error_message = "each secret must have a replica in both regions, so it survives the loss of one"
  }
}

run "no_value_is_in_the_state_and_access_is_per_secret" {
  command = plan

  # The module declares no secret version and no random value: nothing secret reaches the plan
  # or the state (tests/tests/infra.rs also checks no module does).
  assert {
    condition     = google_secret_manager_secret_iam_member.accessor["orders-api-key-hashes/orders-list"].secret_id == "orders-api-key-hashes" && google_secret_manager_secret_iam_member.accessor["orders-api-key-hashes/orders-list"].role == "roles/secretmanager.secretAccessor"
    error_message = "each accessor reads only its secret"
  }
  assert {
    condition     = length(google_secret_manager_secret_iam_member.accessor) == 2
    error_message = "no access beyond what was asked"
  }
}
