variable "project_id" {
  description = "The project of the jobs."
  type        = string
}

variable "region" {
  description = "Cloud Scheduler's region."
  type        = string
}

variable "jobs" {
  description = "Scheduled calls (the route table's functions with a schedule): name, cron schedule (UTC), https URL to POST."
  type = list(object({
    name     = string
    schedule = string
    url      = string
  }))
  validation {
    condition     = alltrue([for j in var.jobs : startswith(j.url, "https://") && length(split(" ", j.schedule)) == 5])
    error_message = "Each job needs an https URL and a five-field cron schedule."
  }
}

variable "service_account" {
  description = "Email of the service account whose OIDC token the calls carry (the called function accepts only it)."
  type        = string
}

variable "paused" {
  description = "Create the jobs paused (the standby region's scheduler until failover)."
  type        = bool
  default     = false
}
