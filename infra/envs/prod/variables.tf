variable "project_id" {
  description = "The prod project (its own, separate from the other environments)."
  type        = string
}

variable "hosts" {
  description = "Public host names of prod."
  type        = list(string)
}

variable "database_instances" {
  description = "The Cloud SQL writer (name, region role) and its replica's name; null: tern-prod in europe-west1, tern-prod-replica in europe-west4. Set by the failover and failback runbooks (docs/operations.md, \"Region failover\")."
  type = object({
    writer        = string
    writer_region = string
    replica       = string
  })
  default = null
}

variable "standby_hosts" {
  description = "Hosts (among hosts) that always answer with the standby region's Gateway: its test host."
  type        = list(string)
  default     = []
}

variable "dns_zone" {
  description = "The public zone of the hosts: resource name and domain (with a trailing dot)."
  type = object({
    name     = string
    dns_name = string
  })
}

variable "external_publishers" {
  description = "Topic -> members outside Tern allowed to publish (the payment provider's integration on payments)."
  type        = map(list(string))
  default     = {}
}

variable "active_region" {
  description = "Which region serves the public hosts: primary, or standby after a failover (docs/operations.md, \"Region failover\")."
  type        = string
  default     = "primary"
}

variable "alert_channels" {
  description = "Existing Cloud Monitoring notification channels (ids) every alert notifies."
  type        = list(string)
  default     = []
}

variable "alert_emails" {
  description = "Addresses an email notification channel is made for; every alert notifies them. prod refuses a plan without this or alert_channels."
  type        = list(string)
  default     = []
  validation {
    condition     = length(var.alert_emails) + length(var.alert_channels) > 0
    error_message = "prod needs someone to notify: set alert_emails or alert_channels (an alert nobody receives is no alert)."
  }
}

variable "build_attestor" {
  description = "The build attestor (infra/bootstrap output build_attestor)."
  type        = string
}

variable "image_repository" {
  description = "The functions' image repository (infra/bootstrap output registry)."
  type        = string
}
