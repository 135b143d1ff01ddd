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
