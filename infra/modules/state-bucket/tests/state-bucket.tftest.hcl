mock_provider "google" {}

variables {
  project_id = "tern-ops"
  name       = "tern-tfstate"
  prefix_admins = {
    apply-dev = { prefix = "envs/dev", member = "serviceAccount:ci-tofu-apply-dev@tern-ops.iam.gserviceaccount.com" }
  }
  prefix_readers = {
    plan-dev = { prefix = "envs/dev", member = "serviceAccount:ci-tofu-plan-dev@tern-ops.iam.gserviceaccount.com" }
  }
}

run "versioned_private_and_prefix_scoped" {
  command = plan

  assert {
    condition     = google_storage_bucket.state.versioning[0].enabled && google_storage_bucket.state.public_access_prevention == "enforced" && google_storage_bucket.state.uniform_bucket_level_access
    error_message = "a versioned, private bucket"
  }
  assert {
    condition     = google_storage_bucket_iam_member.prefix_admin["apply-dev"].condition[0].expression == "resource.name.startsWith(\"projects/_/buckets/tern-tfstate/objects/envs/dev/\")"
    error_message = "each identity reaches only its environment's prefix"
  }
  assert {
    condition     = google_storage_bucket_iam_member.prefix_reader["plan-dev"].role == "roles/storage.objectViewer"
    error_message = "plan identities read the state"
  }
  assert {
    condition = (google_storage_bucket_iam_member.prefix_locker["plan-dev"].role == "roles/storage.objectUser" &&
    google_storage_bucket_iam_member.prefix_locker["plan-dev"].condition[0].expression == "resource.name == \"projects/_/buckets/tern-tfstate/objects/envs/dev/default.tflock\"")
    error_message = "plan identities may create and delete their environment's lock object, and no other object"
  }
}
