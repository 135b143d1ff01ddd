data "google_project" "this" {
  project_id = var.project_id
}

locals {
  # Pub/Sub's own service agent moves undeliverable messages and signs push tokens.
  pubsub_agent = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"
}

resource "google_pubsub_topic" "this" {
  # checkov:skip=CKV_GCP_83:Topics use Google-managed encryption; a customer-managed key adds a KMS dependency this design does not need.
  for_each = toset(var.topics)

  project                    = var.project_id
  name                       = each.value
  message_retention_duration = var.message_retention
  labels = {
    app = "tern"
  }
}

resource "google_pubsub_topic" "dead_letter" {
  # checkov:skip=CKV_GCP_83:Topics use Google-managed encryption; a customer-managed key adds a KMS dependency this design does not need.
  for_each = toset(var.topics)

  project                    = var.project_id
  name                       = "${each.value}-dead-letter"
  message_retention_duration = var.message_retention
  labels = {
    app = "tern"
  }
}

resource "google_pubsub_subscription" "push" {
  for_each = { for s in var.subscriptions : s.name => s }

  project = var.project_id
  name    = each.key
  topic   = google_pubsub_topic.this[each.value.topic].id
  filter = length(each.value.types) == 0 ? null : join(" OR ", [
    for t in each.value.types : "attributes.\"ce-type\" = \"${t}\""
  ])

  ack_deadline_seconds       = 60
  message_retention_duration = var.message_retention

  push_config {
    push_endpoint = each.value.endpoint
    oidc_token {
      service_account_email = var.push_service_account
      audience              = each.value.endpoint
    }
  }

  retry_policy {
    minimum_backoff = var.retry_backoff.minimum
    maximum_backoff = var.retry_backoff.maximum
  }

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.dead_letter[each.value.topic].id
    max_delivery_attempts = var.max_delivery_attempts
  }

  expiration_policy {
    ttl = ""
  }

  labels = {
    app = "tern"
  }
}

# Where operators find dead letters (scripts/replay-dead-letters).
resource "google_pubsub_subscription" "dead_letter_inspect" {
  for_each = toset(var.topics)

  project                    = var.project_id
  name                       = "${each.value}-dead-letter-inspect"
  topic                      = google_pubsub_topic.dead_letter[each.value].id
  ack_deadline_seconds       = 60
  message_retention_duration = var.message_retention
  retain_acked_messages      = false
  expiration_policy {
    ttl = ""
  }
  labels = {
    app = "tern"
  }
}

resource "google_pubsub_topic_iam_member" "publisher" {
  for_each = var.publishers

  project = var.project_id
  topic   = google_pubsub_topic.this[each.value.topic].name
  role    = "roles/pubsub.publisher"
  member  = each.value.member
}

resource "google_pubsub_topic_iam_member" "dead_letter_publisher" {
  for_each = toset(var.topics)

  project = var.project_id
  topic   = google_pubsub_topic.dead_letter[each.value].name
  role    = "roles/pubsub.publisher"
  member  = local.pubsub_agent
}

resource "google_pubsub_subscription_iam_member" "dead_letter_subscriber" {
  for_each = { for s in var.subscriptions : s.name => s }

  project      = var.project_id
  subscription = google_pubsub_subscription.push[each.key].name
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_agent
}

resource "google_service_account_iam_member" "push_token_creator" {
  service_account_id = "projects/${var.project_id}/serviceAccounts/${var.push_service_account}"
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = local.pubsub_agent
}
