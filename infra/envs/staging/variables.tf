variable "project_id" {
  description = "The staging project (its own, separate from the other environments)."
  type        = string
}

variable "hosts" {
  description = "Public host names of staging."
  type        = list(string)
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

variable "alert_channels" {
  description = "Existing Cloud Monitoring notification channels (ids) every alert notifies."
  type        = list(string)
  default     = []
}

variable "alert_emails" {
  description = "Addresses an email notification channel is made for; every alert notifies them."
  type        = list(string)
  default     = []
}

variable "build_attestor" {
  description = "The build attestor (infra/bootstrap output build_attestor)."
  type        = string
}

variable "image_repository" {
  description = "The functions' image repository (infra/bootstrap output registry)."
  type        = string
}
