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

variable "database_password_secret" {
  description = "Secret id of the generated database password."
  type        = string
  default     = "tern-db-password"
}

variable "secrets" {
  description = <<-EOT
    Application secrets by Secret Manager id (the route table's secret settings, lowercased with
    dashes: WEB_CSRF_SECRET -> web-csrf-secret). generate = true stores a random 48-character
    value; otherwise the secret is created empty and an operator adds a version
    (infra/README.md).
  EOT
  type = map(object({
    generate = bool
  }))
  default = {}
  validation {
    condition     = alltrue([for id in keys(var.secrets) : can(regex("^[a-z][a-z0-9-]{0,254}$", id))])
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
