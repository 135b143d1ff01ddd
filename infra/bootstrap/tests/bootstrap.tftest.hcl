mock_provider "google" {
  mock_data "google_project" {
    defaults = {
      number = "123456789012"
    }
  }
  mock_data "google_kms_crypto_key_version" {
    defaults = {
      id         = "projects/tern-ops/locations/europe/keyRings/tern-build/cryptoKeys/tern-build-attestor/cryptoKeyVersions/1"
      public_key = [{ pem = "-----BEGIN PUBLIC KEY-----\nMFkw\n-----END PUBLIC KEY-----\n", algorithm = "EC_SIGN_P256_SHA256" }]
    }
  }
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
  assert {
    condition     = output.build_attestor == "projects/tern-ops/attestors/tern-build" && toset(module.attestor.verifiers) == toset(["dev", "staging", "prod"])
    error_message = "one attestor, verified by every environment's Binary Authorization agent"
  }
}
