variable "project_id" {
  description = "The project holding the state bucket (the ops project)."
  type        = string
}

variable "name" {
  description = "The bucket's globally unique name."
  type        = string
  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]$", var.name))
    error_message = "name must be a valid bucket name."
  }
}

variable "location" {
  description = "A multi-region, so the state outlives a region."
  type        = string
  default     = "EU"
}

variable "prefix_admins" {
  description = "label -> {prefix (envs/<env>), member} that may read and write only that prefix."
  type = map(object({
    prefix = string
    member = string
  }))
  default = {}
}

variable "prefix_readers" {
  description = "label -> {prefix, member} that may read it and take its lock, never write the state (plan identities)."
  type = map(object({
    prefix = string
    member = string
  }))
  default = {}
}
