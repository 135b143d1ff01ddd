variable "project_id" {
  description = "The project holding the registry (shared by every environment: images are promoted by digest)."
  type        = string
}

variable "location" {
  description = "A multi-region (europe, us, asia), so that losing one region does not lose the images."
  type        = string
  default     = "europe"
  validation {
    condition     = contains(["europe", "us", "asia"], var.location)
    error_message = "location must be a multi-region: europe, us or asia."
  }
}

variable "repository_id" {
  description = "The repository's id."
  type        = string
  default     = "tern"
}

variable "writers" {
  description = "label -> member that may push images (the images workflow's identity only)."
  type        = map(string)
  default     = {}
}

variable "readers" {
  description = "label -> member that may pull images (each environment's GKE node service accounts)."
  type        = map(string)
  default     = {}
}

variable "keep_recent_versions" {
  description = "How many recent versions of each image the cleanup policy always keeps."
  type        = number
  default     = 30
}
