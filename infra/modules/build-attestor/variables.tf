variable "project_id" {
  description = "The ops project (where the images are built)."
  type        = string
}

variable "name" {
  description = "The key ring, note and attestor name."
  type        = string
  default     = "tern-build"
}

variable "location" {
  description = "The KMS location of the signing key (a multi-region, like the registry's)."
  type        = string
  default     = "europe"
}

variable "signer" {
  description = "The images workflow's identity (member string): the only one that may sign."
  type        = string
  validation {
    condition     = startswith(var.signer, "serviceAccount:")
    error_message = "the signer is a service account member (serviceAccount:...)."
  }
}

variable "verifiers" {
  description = "label -> member: each environment's Binary Authorization service agent."
  type        = map(string)
  default     = {}
}
