# The route table's secrets, as Secret Manager secrets with no value: OpenTofu holds no secret,
# so none is in its state (docs/decisions/0027). An operator adds each value outside it:
# scripts/secret-init for the generated ones (a random key, e.g. the CSRF key), or
# `gcloud secrets versions add` for the provided ones (infra/README.md). The database has no
# password at all (IAM database authentication, infra/modules/cloudsql).
resource "google_secret_manager_secret" "this" {
  for_each = toset(var.secrets)

  project   = var.project_id
  secret_id = each.value

  replication {
    user_managed {
      dynamic "replicas" {
        for_each = var.locations
        content {
          location = replicas.value
        }
      }
    }
  }

  labels = {
    app = "tern"
  }
}

resource "google_secret_manager_secret_iam_member" "accessor" {
  for_each = var.accessors

  project   = var.project_id
  secret_id = google_secret_manager_secret.this[each.value.secret].secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = each.value.member
}
