# One Google service account per function, usable only by that function's Kubernetes service
# account (fn-<name> in the tern namespace) through Workload Identity. Roles come from the
# modules that own the resources (secrets, pubsub), each for exactly what the route table grants.
resource "google_service_account" "function" {
  for_each = toset(var.functions)

  project      = var.project_id
  account_id   = "fn-${each.value}"
  display_name = "Tern function ${each.value}"
}

resource "google_service_account_iam_member" "workload_identity" {
  for_each = toset(var.functions)

  service_account_id = google_service_account.function[each.value].name
  role               = "roles/iam.workloadIdentityUser"
  member             = "serviceAccount:${var.project_id}.svc.id.goog[${var.namespace}/fn-${each.value}]"
}

# Pub/Sub push and Cloud Scheduler sign their calls with these; functions accept only them.
resource "google_service_account" "push" {
  project      = var.project_id
  account_id   = "pubsub-push"
  display_name = "Pub/Sub push deliveries to Tern functions"
}

resource "google_service_account" "scheduler" {
  project      = var.project_id
  account_id   = "scheduler"
  display_name = "Cloud Scheduler calls to Tern functions"
}
