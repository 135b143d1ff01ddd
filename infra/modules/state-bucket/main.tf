resource "google_storage_bucket" "state" {
  # checkov:skip=CKV_GCP_62:Access to the state is recorded by Cloud Audit Logs (data access logs on storage.googleapis.com, infra/README.md step 3) rather than by legacy bucket access logs.
  project                     = var.project_id
  name                        = var.name
  location                    = var.location
  storage_class               = "STANDARD"
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = false

  versioning {
    enabled = true
  }

  soft_delete_policy {
    retention_duration_seconds = 604800
  }

  # Old state versions: keep 20 and anything younger than 90 days.
  lifecycle_rule {
    action {
      type = "Delete"
    }
    condition {
      num_newer_versions         = 20
      days_since_noncurrent_time = 90
      with_state                 = "ARCHIVED"
    }
  }

  labels = {
    app = "tern"
  }
}

# Each environment's identities reach only their own prefix.
resource "google_storage_bucket_iam_member" "prefix_admin" {
  for_each = var.prefix_admins

  bucket = google_storage_bucket.state.name
  role   = "roles/storage.objectAdmin"
  member = each.value.member
  condition {
    title      = "only-${replace(each.value.prefix, "/", "-")}"
    expression = "resource.name.startsWith(\"projects/_/buckets/${var.name}/objects/${each.value.prefix}/\")"
  }
}

resource "google_storage_bucket_iam_member" "prefix_reader" {
  for_each = var.prefix_readers

  bucket = google_storage_bucket.state.name
  role   = "roles/storage.objectViewer"
  member = each.value.member
  condition {
    title      = "read-${replace(each.value.prefix, "/", "-")}"
    expression = "resource.name.startsWith(\"projects/_/buckets/${var.name}/objects/${each.value.prefix}/\")"
  }
}

# A plan takes the state lock as an apply does: OpenTofu's gcs backend creates
# <prefix>/default.tflock and deletes it afterwards. The plan identities may create and delete
# that one object and nothing else, so a plan can lock but never write the state.
resource "google_storage_bucket_iam_member" "prefix_locker" {
  for_each = var.prefix_readers

  bucket = google_storage_bucket.state.name
  role   = "roles/storage.objectUser"
  member = each.value.member
  condition {
    title      = "lock-${replace(each.value.prefix, "/", "-")}"
    expression = "resource.name == \"projects/_/buckets/${var.name}/objects/${each.value.prefix}/default.tflock\""
  }
}

# Listing objects is needed to find the state; it reveals names, not contents.
resource "google_storage_bucket_iam_member" "list" {
  for_each = merge(var.prefix_admins, var.prefix_readers)

  bucket = google_storage_bucket.state.name
  role   = "roles/storage.legacyBucketReader"
  member = each.value.member
}
