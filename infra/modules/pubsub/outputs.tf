output "topics" {
  description = "topic name -> id."
  value       = { for t, r in google_pubsub_topic.this : t => r.id }
}

output "dead_letter_topics" {
  description = "topic name -> its dead-letter topic's id."
  value       = { for t, r in google_pubsub_topic.dead_letter : t => r.id }
}

output "subscriptions" {
  description = "subscription name -> push endpoint."
  value       = { for n, s in google_pubsub_subscription.push : n => s.push_config[0].push_endpoint }
}

output "dead_letter_subscriptions" {
  description = "The subscriptions on the dead-letter topics (what the monitoring module watches)."
  value       = [for s in google_pubsub_subscription.dead_letter_inspect : s.name]
}
