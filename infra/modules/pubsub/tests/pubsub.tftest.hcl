mock_provider "google" {
  mock_data "google_project" {
    defaults = {
      number = "123456789012"
    }
  }
}

variables {
  project_id = "tern-test"
  topics     = ["orders", "payments"]
  subscriptions = [{
    name     = "payments-events-payments"
    topic    = "payments"
    endpoint = "https://orders.example.com/events/payments"
    types    = ["com.example.payment.completed", "com.example.payment.failed"]
  }]
  push_service_account = "pubsub-push@tern-test.iam.gserviceaccount.com"
  publishers = {
    "orders/orders-create" = { topic = "orders", member = "serviceAccount:fn-orders-create@tern-test.iam.gserviceaccount.com" }
    "payments/external-0"  = { topic = "payments", member = "serviceAccount:integration@provider.iam.gserviceaccount.com" }
  }
}

run "every_topic_has_a_dead_letter_topic_and_an_inspection_subscription" {
  command = plan

  assert {
    condition     = toset(keys(google_pubsub_topic.dead_letter)) == toset(["orders", "payments"]) && google_pubsub_topic.dead_letter["payments"].name == "payments-dead-letter"
    error_message = "a dead-letter topic per topic"
  }
  assert {
    condition     = google_pubsub_subscription.dead_letter_inspect["payments"].name == "payments-dead-letter-inspect"
    error_message = "an inspection subscription per dead-letter topic"
  }
}

run "every_push_subscription_has_oidc_retries_and_a_dead_letter_policy" {
  command = plan

  assert {
    condition = alltrue([for s in google_pubsub_subscription.push :
      s.push_config[0].oidc_token[0].service_account_email == "pubsub-push@tern-test.iam.gserviceaccount.com" &&
    s.push_config[0].oidc_token[0].audience == s.push_config[0].push_endpoint])
    error_message = "pushes carry an OIDC token of the push service account, for the endpoint's URL"
  }
  assert {
    condition = alltrue([for s in google_pubsub_subscription.push :
    length(s.dead_letter_policy) == 1 && s.dead_letter_policy[0].max_delivery_attempts == 10 && length(s.retry_policy) == 1])
    error_message = "every subscription has a retry policy and dead-letters after 10 attempts"
  }
  assert {
    condition     = google_pubsub_subscription.push["payments-events-payments"].filter == "attributes.\"ce-type\" = \"com.example.payment.completed\" OR attributes.\"ce-type\" = \"com.example.payment.failed\""
    error_message = "only the accepted event types are delivered"
  }
}

run "publishers_reach_only_their_topics" {
  command = plan

  assert {
    condition     = google_pubsub_topic_iam_member.publisher["orders/orders-create"].topic == "orders" && google_pubsub_topic_iam_member.publisher["payments/external-0"].topic == "payments"
    error_message = "each publisher on its own topic"
  }
  assert {
    condition     = length(google_pubsub_topic_iam_member.publisher) == 2
    error_message = "no other publisher"
  }
  assert {
    condition     = google_pubsub_topic_iam_member.dead_letter_publisher["payments"].member == "serviceAccount:service-123456789012@gcp-sa-pubsub.iam.gserviceaccount.com"
    error_message = "Pub/Sub's service agent may move messages to the dead-letter topic"
  }
}

run "plain_http_endpoints_are_refused" {
  command = plan
  variables {
    subscriptions = [{ name = "x-payments", topic = "payments", endpoint = "http://orders.example.com/events/payments", types = [] }]
  }
  expect_failures = [var.subscriptions]
}
