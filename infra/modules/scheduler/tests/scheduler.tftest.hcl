mock_provider "google" {}

variables {
  project_id      = "tern-test"
  region          = "europe-west1"
  jobs            = [{ name = "outbox-relay", schedule = "* * * * *", url = "https://orders.example.com/internal/outbox/flush" }]
  service_account = "scheduler@tern-test.iam.gserviceaccount.com"
}

run "the_relay_is_called_with_an_oidc_token" {
  command = plan

  assert {
    condition     = google_cloud_scheduler_job.this["outbox-relay"].http_target[0].oidc_token[0].service_account_email == "scheduler@tern-test.iam.gserviceaccount.com"
    error_message = "calls carry the scheduler identity's OIDC token"
  }
  assert {
    condition     = google_cloud_scheduler_job.this["outbox-relay"].http_target[0].oidc_token[0].audience == "https://orders.example.com/internal/outbox/flush"
    error_message = "the audience is the URL the function checks"
  }
  assert {
    condition     = google_cloud_scheduler_job.this["outbox-relay"].schedule == "* * * * *" && google_cloud_scheduler_job.this["outbox-relay"].paused == false
    error_message = "the route table's schedule, running"
  }
}

run "a_bad_schedule_is_refused" {
  command = plan
  variables {
    jobs = [{ name = "x", schedule = "every minute", url = "https://orders.example.com/x" }]
  }
  expect_failures = [var.jobs]
}
