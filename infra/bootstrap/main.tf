# One-time foundation, applied by an operator (infra/README.md step 3): the state bucket with one
# prefix per environment, the shared image registry, and GitHub Actions' identities.

module "services" {
  source     = "../modules/project-services"
  project_id = var.ops_project_id
  services = [
    "artifactregistry.googleapis.com",
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
