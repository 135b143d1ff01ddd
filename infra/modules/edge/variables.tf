variable "project_id" {
  description = "The environment's project."
  type        = string
}

variable "name" {
  description = "Prefix of every resource (tern-<env>)."
  type        = string
}

variable "hosts" {
  description = "Public host names served by the Gateway(s); each gets a Google-managed certificate."
  type        = list(string)
  validation {
    condition     = length(var.hosts) > 0 && alltrue([for h in var.hosts : can(regex("^([a-z0-9-]+\\.)+[a-z]{2,}$", h))])
    error_message = "hosts must be lowercase DNS names."
  }
}

variable "clusters" {
  description = "Cluster roles that get a Gateway address: [\"primary\"], or [\"primary\", \"standby\"] in prod."
  type        = list(string)
  default     = ["primary"]
  validation {
    condition     = contains(var.clusters, "primary") && alltrue([for c in var.clusters : contains(["primary", "standby"], c)])
    error_message = "clusters must contain primary, and only primary or standby."
  }
}

variable "rate_limit_per_minute" {
  description = "Requests per minute one client IP may send before Cloud Armor answers 429."
  type        = number
  default     = 600
}
