variable "ops_project_id" {
  description = "The ops project: state bucket, image registry, CI identities. Not an environment."
  type        = string
}

variable "state_bucket" {
  description = "Globally unique name of the state bucket."
  type        = string
}

variable "repository" {
  description = "The GitHub repository (owner/name) whose workflows may authenticate."
  type        = string
}

variable "environments" {
  description = "Environment -> its project id."
  type        = map(string)
  validation {
    condition     = alltrue([for e in keys(var.environments) : contains(["dev", "staging", "prod"], e)])
    error_message = "environments are dev, staging and prod."
  }
}

variable "registry_readers" {
  description = "label -> GKE node service accounts allowed to pull images (each environment's node_service_accounts output, added after its first apply)."
  type        = map(string)
  default     = {}
}
