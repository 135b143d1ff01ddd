variable "project_id" {
  description = "The project of the secrets."
  type        = string
}

variable "locations" {
  description = "Regions each secret is replicated to; with two regions a secret survives the loss of either."
  type        = list(string)
  validation {
    condition     = length(var.locations) >= 1 && length(distinct(var.locations)) == length(var.locations)
    error_message = "locations must list at least one region, without repeats."
  }
}

variable "secrets" {
  description = <<-EOT
    Application secrets by Secret Manager id (the route table's secret settings, lowercased with
    dashes: WEB_CSRF_SECRET -> web-csrf-secret). Each is created without a value; an operator
    adds it (scripts/secret-init, or gcloud secrets versions add; infra/README.md).
  EOT
  type        = list(string)
  default     = []
  validation {
    condition     = alltrue([for id in var.secrets : can(regex("^[a-z][a-z0-9-]{0,254}$", id))])
    error_message = "Secret ids must be lowercase letters, digits and dashes."
  }
}

variable "accessors" {
  description = "Who may read which secret, keyed by a label known at plan time (<secret>/<function>)."
  type = map(object({
    secret = string
    member = string
  }))
  default = {}
}
