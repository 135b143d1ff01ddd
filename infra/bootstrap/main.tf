# One-time foundation, applied by an operator (infra/README.md step 3): the state bucket with one
# prefix per environment, the shared image registry, and GitHub Actions' identities.

module "services" {
  source     = "../modules/project-services"
  project_id = var.ops_project_id
  services = [
    "artifactregistry.googleapis.com",
    "binaryauthorization.googleapis.com",
    "cloudkms.googleapis.com",
    "containeranalysis.googleapis.com",
    "containerscanning.googleapis.com",
    "cloudresourcemanager.googleapis.com",
    "iam.googleapis.com",
    "iamcredentials.googleapis.com",
    "serviceusage.googleapis.com",
    "storage.googleapis.com",
    "sts.googleapis.com",
  ]
}

module "ci" {
  source       = "../modules/github-ci"
  project_id   = var.ops_project_id
  repository   = var.repository
  environments = var.environments
  depends_on   = [module.services]
}

module "state" {
  source     = "../modules/state-bucket"
  project_id = var.ops_project_id
  name       = var.state_bucket
  prefix_admins = {
    for e in keys(var.environments) : "apply-${e}" => {
      prefix = "envs/${e}"
      member = "serviceAccount:${module.ci.apply_service_accounts[e]}"
    }
  }
  prefix_readers = {
    for e in keys(var.environments) : "plan-${e}" => {
      prefix = "envs/${e}"
      member = "serviceAccount:${module.ci.plan_service_accounts[e]}"
    }
  }
}

module "registry" {
  source     = "../modules/registry"
  project_id = var.ops_project_id
  writers    = { images = "serviceAccount:${module.ci.images_service_account}" }
  readers    = var.registry_readers
  depends_on = [module.services]
}

# The attestor images need in every environment (infra/modules/binauthz-policy): the images
# identity signs; each environment's Binary Authorization service agent verifies.
# The environments' Binary Authorization service agents must exist before they are granted the
# verifier role: enabling the API in each environment project creates them.
resource "google_project_service" "env_binauthz" {
  for_each           = var.environments
  project            = each.value
  service            = "binaryauthorization.googleapis.com"
  disable_on_destroy = false
}

data "google_project" "env" {
  for_each   = var.environments
  project_id = each.value
}

module "attestor" {
  source     = "../modules/build-attestor"
  project_id = var.ops_project_id
  signer     = "serviceAccount:${module.ci.images_service_account}"
  verifiers = {
    for e, p in data.google_project.env : e => "serviceAccount:service-${p.number}@gcp-sa-binaryauthorization.iam.gserviceaccount.com"
  }
  depends_on = [module.services, google_project_service.env_binauthz]
}
