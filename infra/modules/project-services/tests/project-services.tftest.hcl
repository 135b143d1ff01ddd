mock_provider "google" {}

variables {
  project_id = "tern-test"
}

run "the_apis_tern_needs_and_none_disabled_on_destroy" {
  command = plan

  assert {
    condition     = alltrue([for s in ["container.googleapis.com", "sqladmin.googleapis.com", "pubsub.googleapis.com", "secretmanager.googleapis.com", "containerscanning.googleapis.com"] : contains(keys(google_project_service.this), s)])
    error_message = "GKE, Cloud SQL, Pub/Sub, Secret Manager and scanning are enabled"
  }
  assert {
    condition     = alltrue([for s in google_project_service.this : s.disable_on_destroy == false])
    error_message = "removing an API from the list must not turn it off"
  }
}

run "a_bad_service_name_is_refused" {
  command = plan
  variables {
    services = ["container"]
  }
  expect_failures = [var.services]
}
