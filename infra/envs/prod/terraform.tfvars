# Example inputs for prod: every required input, with the values the rest of the repository
# assumes (knative/chart/tern-functions/env/prod.yaml). Replace the project and domain with yours.
project_id = "tern-prod"
hosts      = ["orders.example.com", "standby.orders.example.com"]
# The standby region's own test host: always its Gateway, so it can be tried before a failover.
standby_hosts = ["standby.orders.example.com"]
dns_zone = {
  name     = "tern-prod"
  dns_name = "orders.example.com."
}
external_publishers = {
  payments = ["serviceAccount:payments-integration@payments-provider-prod.iam.gserviceaccount.com"]
}
# The Cloud SQL instances: null is tern-prod (writer, europe-west1) and tern-prod-replica
# (europe-west4). scripts/failback says what to set here at each of its steps.
database_instances = null
# primary; "standby" after a region failover (scripts/failover switches DNS at once; commit this too).
active_region  = "primary"
alert_channels = []
# Every alert (Cloud SQL, Pub/Sub, GKE nodes, the uptime check) notifies these; prod refuses a
# plan without one. Replace with your on-call address or list your channels above.
alert_emails = ["tern-oncall@example.com"]
# From infra/bootstrap's outputs: the attestor images need, and the registry they come from.
build_attestor   = "projects/tern-ops/attestors/tern-build"
image_repository = "europe-docker.pkg.dev/tern-ops/tern"
