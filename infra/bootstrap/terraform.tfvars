# Example inputs: every required input. Replace the project ids and the bucket name with yours.
ops_project_id = "tern-ops"
state_bucket   = "tern-tfstate"
repository     = "tern-platform/tern"
environments = {
  dev     = "tern-dev"
  staging = "tern-staging"
  prod    = "tern-prod"
}
registry_readers = {
  dev-primary     = "serviceAccount:tern-dev-primary-nodes@tern-dev.iam.gserviceaccount.com"
  staging-primary = "serviceAccount:tern-staging-primary-nodes@tern-staging.iam.gserviceaccount.com"
  prod-primary    = "serviceAccount:tern-prod-primary-nodes@tern-prod.iam.gserviceaccount.com"
  prod-standby    = "serviceAccount:tern-prod-standby-nodes@tern-prod.iam.gserviceaccount.com"
}
