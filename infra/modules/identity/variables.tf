variable "project_id" {
  description = "The environment's project."
  type        = string
}

variable "functions" {
  description = "Function names (the route table's); each gets service account fn-<name>."
  type        = list(string)
  validation {
    condition     = alltrue([for f in var.functions : can(regex("^[a-z][a-z0-9-]{1,26}[a-z0-9]$", f))])
    error_message = "Function names must make valid service-account ids (fn-<name>, at most 30 characters)."
  }
}

variable "namespace" {
  description = "The Kubernetes namespace of the functions' service accounts."
  type        = string
  default     = "tern"
}
