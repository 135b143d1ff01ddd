mock_provider "google" {}

variables {
  project_id   = "tern-prod"
  attestor     = "projects/tern-ops/attestors/tern-build"
  own_registry = "europe-docker.pkg.dev/tern-ops/tern"
}

run "every_image_needs_our_attestation_unless_listed" {
  command = plan

  assert {
    condition     = google_binary_authorization_policy.this.default_admission_rule[0].evaluation_mode == "REQUIRE_ATTESTATION" && google_binary_authorization_policy.this.default_admission_rule[0].enforcement_mode == "ENFORCED_BLOCK_AND_AUDIT_LOG"
    error_message = "the default rule requires an attestation and blocks"
  }
  assert {
    condition     = google_binary_authorization_policy.this.default_admission_rule[0].require_attestations_by == toset(["projects/tern-ops/attestors/tern-build"])
    error_message = "by our build attestor"
  }
  assert {
    condition     = google_binary_authorization_policy.this.global_policy_evaluation_mode == "ENABLE"
    error_message = "Google's system images are exempt by Google's global policy"
  }
  assert {
    condition     = length(google_binary_authorization_policy.this.admission_whitelist_patterns) == length(var.system_image_patterns) && alltrue([for p in google_binary_authorization_policy.this.admission_whitelist_patterns : !startswith(p.name_pattern, "europe-docker.pkg.dev/tern-ops")])
    error_message = "the platform images are listed one by one, and none is ours"
  }
}

run "a_dry_run_only_logs" {
  command = plan
  variables {
    enforcement_mode = "DRYRUN_AUDIT_LOG_ONLY"
  }

  assert {
    condition     = google_binary_authorization_policy.this.default_admission_rule[0].enforcement_mode == "DRYRUN_AUDIT_LOG_ONLY"
    error_message = "the dry run logs what enforcement would refuse"
  }
}

run "an_unknown_enforcement_mode_is_refused" {
  command = plan
  variables {
    enforcement_mode = "OFF"
  }
  expect_failures = [var.enforcement_mode]
}

run "an_exemption_of_our_registry_is_refused" {
  command = plan
  variables {
    system_image_patterns = ["europe-docker.pkg.dev/tern-ops/**"]
  }
  expect_failures = [var.own_registry]
}

run "an_exemption_of_everything_is_refused" {
  command = plan
  variables {
    system_image_patterns = ["*"]
  }
  expect_failures = [var.system_image_patterns]
}

run "a_bad_attestor_is_refused" {
  command = plan
  variables {
    attestor = "tern-build"
  }
  expect_failures = [var.attestor]
}
