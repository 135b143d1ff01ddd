mock_provider "google" {
  mock_resource "google_service_account" {
    defaults = {
      name  = "projects/tern-test/serviceAccounts/mock-account@tern-test.iam.gserviceaccount.com"
      email = "mock-account@tern-test.iam.gserviceaccount.com"
    }
  }
}

run "state_registry_and_ci_identities" {
  command = plan

  assert {
    condition     = module.state.name == "tern-tfstate"
    error_message = "the state bucket"
  }
  assert {
    condition     = module.registry.repository == "europe-docker.pkg.dev/tern-ops/tern"
    error_message = "the shared multi-region registry the chart values name"
  }
  assert {
    condition     = toset(keys(module.ci.apply_service_accounts)) == toset(["dev", "staging", "prod"]) && toset(keys(module.ci.plan_service_accounts)) == toset(["dev", "staging", "prod"])
    error_message = "a plan and an apply identity per environment"
  }
}
