# The database password: generated here, stored only in Secret Manager (and in the state, which
# lives in a bucket only the environment's CI identity can read).
resource "random_password" "database" {
  length           = 40
  special          = true
  override_special = "-_.~"
  min_lower        = 4
  min_upper        = 4
  min_numeric      = 4
}

resource "random_password" "generated" {
  for_each = { for id, s in var.secrets : id => s if s.generate }

  length  = 48
  special = false
}

locals {
  all = merge(
    { (var.database_password_secret) = { generate = true } },
    var.secrets,
  )
  values = merge(
    { (var.database_password_secret) = random_password.database.result },
    { for id, p in random_password.generated : id => p.result },
  )
}

resource "google_secret_manager_secret" "this" {
  for_each = local.all

  project   = var.project_id
  secret_id = each.key

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

resource "google_secret_manager_secret_version" "generated" {
  for_each = nonsensitive(toset(keys(local.values)))

  secret      = google_secret_manager_secret.this[each.value].id
  secret_data = local.values[each.value]
}

resource "google_secret_manager_secret_iam_member" "accessor" {
  for_each = var.accessors

  project   = var.project_id
  secret_id = google_secret_manager_secret.this[each.value.secret].secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = each.value.member
}
