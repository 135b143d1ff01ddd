# GitHub Actions authenticates with its OIDC token; no service-account key exists anywhere.
resource "google_iam_workload_identity_pool" "github" {
  project                   = var.project_id
  workload_identity_pool_id = "github"
  display_name              = "GitHub Actions"
  description               = "OIDC tokens of ${var.repository}'s workflows."
}

resource "google_iam_workload_identity_pool_provider" "github" {
  project                            = var.project_id
  workload_identity_pool_id          = google_iam_workload_identity_pool.github.workload_identity_pool_id
  workload_identity_pool_provider_id = "github-actions"
  display_name                       = "GitHub Actions"

  oidc {
    issuer_uri = "https://token.actions.githubusercontent.com"
  }
  attribute_mapping = {
    "google.subject"        = "assertion.sub"
    "attribute.repository"  = "assertion.repository"
    "attribute.environment" = "assertion.environment"
    "attribute.ref"         = "assertion.ref"
  }
  # Only this repository's jobs running in one of the deployment GitHub environments get a token
  # at all (sub = repo:<owner>/<name>:environment:<env>); everything else is refused outright.
  attribute_condition = join(" || ", [
    for e in local.github_environments : "assertion.sub == \"repo:${var.repository}:environment:${e}\""
  ])
}

locals {
  github_environments = concat(keys(var.environments), [for e in keys(var.environments) : "${e}-plan"], ["images"])
  pool                = google_iam_workload_identity_pool.github.name
  env_principal = {
    for e in local.github_environments :
    e => "principalSet://iam.googleapis.com/${local.pool}/attribute.environment/${e}"
  }
  plan_bindings = merge([
    for env, project in var.environments : { for r in var.plan_roles : "${env}/${r}" => { env = env, project = project, role = r } }
  ]...)
  apply_bindings = merge([
    for env, project in var.environments : { for r in var.apply_roles : "${env}/${r}" => { env = env, project = project, role = r } }
  ]...)
}

# Image pushes: only jobs running in the GitHub environment "images" (on main).
resource "google_service_account" "images" {
  project      = var.project_id
  account_id   = "ci-images"
  display_name = "GitHub Actions: push images"
}

resource "google_service_account_iam_member" "images" {
  service_account_id = google_service_account.images.name
  role               = "roles/iam.workloadIdentityUser"
  member             = local.env_principal["images"]
}

# Plan (pull requests) and apply (main), separate identities per environment.
resource "google_service_account" "plan" {
  for_each = var.environments

  project      = var.project_id
  account_id   = "ci-tofu-plan-${each.key}"
  display_name = "GitHub Actions: tofu plan ${each.key}"
}

resource "google_service_account" "apply" {
  for_each = var.environments

  project      = var.project_id
  account_id   = "ci-tofu-apply-${each.key}"
  display_name = "GitHub Actions: tofu apply ${each.key}"
}

resource "google_service_account_iam_member" "plan" {
  for_each = var.environments

  service_account_id = google_service_account.plan[each.key].name
  role               = "roles/iam.workloadIdentityUser"
  member             = local.env_principal["${each.key}-plan"]
}

resource "google_service_account_iam_member" "apply" {
  for_each = var.environments

  service_account_id = google_service_account.apply[each.key].name
  role               = "roles/iam.workloadIdentityUser"
  member             = local.env_principal[each.key]
}

resource "google_project_iam_member" "plan" {
  for_each = local.plan_bindings

  project = each.value.project
  role    = each.value.role
  member  = "serviceAccount:${google_service_account.plan[each.value.env].email}"
}

resource "google_project_iam_member" "apply" {
  for_each = local.apply_bindings

  project = each.value.project
  role    = each.value.role
  member  = "serviceAccount:${google_service_account.apply[each.value.env].email}"
}
