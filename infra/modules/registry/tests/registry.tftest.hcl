mock_provider "google" {}

variables {
  project_id = "tern-ops"
  writers    = { images = "serviceAccount:ci-images@tern-ops.iam.gserviceaccount.com" }
  readers    = { prod-primary = "serviceAccount:tern-prod-primary-nodes@tern-prod.iam.gserviceaccount.com" }
}

run "multi_region_immutable_scanned_and_cleaned" {
  command = plan

  assert {
    condition     = google_artifact_registry_repository.this.location == "europe"
    error_message = "a multi-region survives a region loss"
  }
  assert {
    condition     = google_artifact_registry_repository.this.docker_config[0].immutable_tags
    error_message = "tags are immutable"
  }
  assert {
    condition     = google_artifact_registry_repository.this.vulnerability_scanning_config[0].enablement_config == "INHERITED"
    error_message = "vulnerability scanning follows the project's (on: containerscanning API)"
  }
  assert {
    condition     = length(google_artifact_registry_repository.this.cleanup_policies) == 2 && google_artifact_registry_repository.this.cleanup_policy_dry_run == false
    error_message = "cleanup policies are active"
  }
  assert {
    condition     = google_artifact_registry_repository_iam_member.writer["images"].role == "roles/artifactregistry.writer" && google_artifact_registry_repository_iam_member.reader["prod-primary"].role == "roles/artifactregistry.reader"
    error_message = "only the image identity writes; nodes read"
  }
}

run "a_single_region_is_refused" {
  command = plan
  variables {
    location = "europe-west1"
  }
  expect_failures = [var.location]
}
