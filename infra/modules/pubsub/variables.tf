variable "project_id" {
  description = "The project of the topics and subscriptions."
  type        = string
}

variable "topics" {
  description = "Topic names (the route table's topics). Each gets a <topic>-dead-letter topic."
  type        = list(string)
  validation {
    condition     = alltrue([for t in var.topics : can(regex("^[a-z][a-z0-9-]{2,200}$", t))])
    error_message = "Topic names must be lowercase letters, digits and dashes."
  }
}

variable "subscriptions" {
  description = <<-EOT
    Push subscriptions, one per consumer function and topic (the route table's subscriptions):
    name (<function>-<topic>), topic, push endpoint URL (https), the event types it accepts
    (a filter on the ce-type attribute; empty = all).
  EOT
  type = list(object({
    name     = string
    topic    = string
    endpoint = string
    types    = list(string)
  }))
  validation {
    condition     = alltrue([for s in var.subscriptions : startswith(s.endpoint, "https://")])
    error_message = "Push endpoints must be https URLs."
  }
}

variable "push_service_account" {
  description = "Email of the service account whose OIDC tokens authenticate pushes (the functions accept only it)."
  type        = string
}

variable "publishers" {
  description = <<-EOT
    Who may publish where, keyed by a label known at plan time (<topic>/<function>): each
    function on the topics it publishes, external producers on the topics they feed.
  EOT
  type = map(object({
    topic  = string
    member = string
  }))
  default = {}
}

variable "max_delivery_attempts" {
  description = "Deliveries before a message goes to the dead-letter topic."
  type        = number
  default     = 10
  validation {
    condition     = var.max_delivery_attempts >= 5 && var.max_delivery_attempts <= 100
    error_message = "max_delivery_attempts must be between 5 and 100 (Pub/Sub's limits)."
  }
}

variable "retry_backoff" {
  description = "Exponential retry backoff between deliveries."
  type = object({
    minimum = string
    maximum = string
  })
  default = {
    minimum = "10s"
    maximum = "600s"
  }
}

variable "message_retention" {
  description = "How long topics and dead-letter subscriptions keep messages."
  type        = string
  default     = "604800s"
}
