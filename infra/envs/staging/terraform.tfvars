# Example inputs for staging: every required input, with the values the rest of the repository
# assumes (knative/chart/tern-functions/env/staging.yaml). Replace the project and domain with yours.
project_id = "tern-staging"
hosts      = ["staging.orders.example.com"]
dns_zone = {
  name     = "tern-staging"
  dns_name = "staging.orders.example.com."
}
external_publishers = {
  payments = ["serviceAccount:payments-integration@payments-provider-staging.iam.gserviceaccount.com"]
}
# Email notification channels for every alert; optional outside prod.
alert_emails = []
# From infra/bootstrap's outputs: the attestor images need, and the registry they come from.
build_attestor   = "projects/tern-ops/attestors/tern-build"
image_repository = "europe-docker.pkg.dev/tern-ops/tern"
