mock_provider "google" {
  mock_resource "google_service_account" {
    defaults = {
      name  = "projects/tern-test/serviceAccounts/mock-account@tern-test.iam.gserviceaccount.com"
      email = "mock-account@tern-test.iam.gserviceaccount.com"
    }
  }
}

variables {
  project_id   = "tern-ops"
  repository   = "tern-platform/tern"
  environments = { dev = "tern-dev", prod = "tern-prod" }
}

run "only_this_repository_and_per_environment_identities" {
  command = plan

  assert {
    condition     = startswith(google_iam_workload_identity_pool_provider.github.attribute_condition, "assertion.sub == \"repo:tern-platform/tern:environment:") && length(split(" || ", google_iam_workload_identity_pool_provider.github.attribute_condition)) == 5
    error_message = "only this repository's jobs in the five deployment GitHub environments get tokens"
  }
  assert {
    condition     = endswith(google_service_account_iam_member.apply["prod"].member, "/attribute.environment/prod")
    error_message = "prod's apply identity only from the GitHub environment prod"
  }
  assert {
    condition     = endswith(google_service_account_iam_member.plan["dev"].member, "/attribute.environment/dev-plan")
    error_message = "plan identities only from <env>-plan"
  }
  assert {
    condition     = endswith(google_service_account_iam_member.images.member, "/attribute.environment/images")
    error_message = "image pushes only from the GitHub environment images"
  }
  assert {
    condition     = google_service_account.images.account_id != google_service_account.apply["prod"].account_id
    error_message = "image push and plan/apply are separate identities"
  }
  assert {
    condition     = alltrue([for k, b in google_project_iam_member.apply : b.project == (startswith(k, "dev/") ? "tern-dev" : "tern-prod")]) && length(google_project_iam_member.apply) == 2 * length(var.apply_roles)
    error_message = "each apply identity holds roles on its own environment's project only"
  }
  assert {
    condition     = !anytrue([for b in merge(google_project_iam_member.apply, google_project_iam_member.plan) : contains(["roles/owner", "roles/editor", "roles/viewer"], b.role)])
    error_message = "no basic roles"
  }
}
