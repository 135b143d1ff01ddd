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

variable "push_paths" {
  description = "The paths Pub/Sub push subscriptions deliver to. A POST to one of them carrying a bearer token skips the per-IP limit (push senders share Google's addresses, and a 429 would count toward dead-lettering); the function still verifies the token (TERN_OIDC=google)."
  type        = list(string)
  default     = []
  validation {
    condition     = alltrue([for p in var.push_paths : can(regex("^/[A-Za-z0-9/_.-]*$", p))]) && length(join("|", var.push_paths)) <= 1024
    error_message = "push_paths are absolute paths of letters, digits and / _ . - only, 1024 characters together at most (Cloud Armor's expression limit is 2048)."
  }
}
