mock_provider "google" {
  mock_resource "google_service_account" {
    defaults = {
      name  = "projects/tern-test/serviceAccounts/mock-account@tern-test.iam.gserviceaccount.com"
      email = "mock-account@tern-test.iam.gserviceaccount.com"
    }
  }
}

variables {
  project_id = "tern-test"
  functions  = ["orders-get", "payments-events"]
}

run "one_identity_per_function_bound_to_its_kubernetes_account_only" {
  command = plan

  assert {
    condition     = google_service_account.function["orders-get"].account_id == "fn-orders-get"
    error_message = "fn-<name>, the chart's naming"
  }
  assert {
    condition     = google_service_account_iam_member.workload_identity["payments-events"].member == "serviceAccount:tern-test.svc.id.goog[tern/fn-payments-events]"
    error_message = "only the function's own Kubernetes service account may act as it"
  }
  assert {
    condition     = alltrue([for b in google_service_account_iam_member.workload_identity : b.role == "roles/iam.workloadIdentityUser"])
    error_message = "the binding grants Workload Identity use and nothing else"
  }
  assert {
    condition     = google_service_account.push.account_id == "pubsub-push" && google_service_account.scheduler.account_id == "scheduler"
    error_message = "the push and scheduler identities the chart expects"
  }
}

run "a_name_too_long_for_an_account_id_is_refused" {
  command = plan
  variables {
    functions = ["a-function-name-far-too-long-for-google"]
  }
  expect_failures = [var.functions]
}
