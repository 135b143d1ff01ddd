variable "project_id" {
  description = "The environment's project."
  type        = string
}

variable "environment" {
  description = "dev, staging or prod: names the channels, the policies and the dashboard."
  type        = string
}

variable "notification_emails" {
  description = "Addresses an email notification channel is made for; every alert policy notifies them."
  type        = list(string)
  default     = []
  validation {
    condition     = alltrue([for e in var.notification_emails : can(regex("^[^@\\s]+@[^@\\s]+\\.[a-z]{2,}$", e))])
    error_message = "notification_emails must be email addresses."
  }
  validation {
    condition     = !var.require_notifications || length(var.notification_emails) + length(var.notification_channels) > 0
    error_message = "this environment requires notifications: give notification_emails or notification_channels."
  }
}

variable "notification_channels" {
  description = "Existing notification channels (ids: PagerDuty, Slack, ...) every alert policy notifies, beside the emails'."
  type        = list(string)
  default     = []
}

variable "require_notifications" {
  description = "Refuse a plan with no notification channel (prod: an alert nobody receives is no alert)."
  type        = bool
  default     = false
}

variable "sql_instances" {
  description = "The Cloud SQL instances watched (the writer and, in prod, its replica), by name."
  type        = list(string)
}

variable "replica_instance" {
  description = "The replica watched for lag, or null."
  type        = string
  default     = null
}

variable "max_connections" {
  description = "PostgreSQL max_connections of the instances: connections above 80 % of it alert."
  type        = number
}

variable "push_subscriptions" {
  description = "The push subscriptions whose oldest unacknowledged message is watched."
  type        = list(string)
}

variable "dead_letter_subscriptions" {
  description = "The subscriptions on the dead-letter topics: a message there is an event no consumer took."
  type        = list(string)
}

variable "thresholds" {
  description = "Alert thresholds: Cloud SQL CPU (0-1), replica lag and oldest unacked message (seconds), GKE node allocatable use (0-1)."
  type = object({
    sql_cpu                = optional(number, 0.8)
    replica_lag_seconds    = optional(number, 60)
    oldest_unacked_seconds = optional(number, 600)
    node_utilization       = optional(number, 0.9)
  })
  default = {}
}

variable "functions_namespace" {
  description = "The namespace the functions and their Rules run in (the ALERTS series' namespace label)."
  type        = string
  default     = "tern"
}
