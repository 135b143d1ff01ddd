variable "project_id" {
  description = "The environment's project."
  type        = string
}

variable "attestor" {
  description = "The build attestor's full name (projects/<ops>/attestors/<name>; build-attestor's output)."
  type        = string
  validation {
    condition     = can(regex("^projects/[a-z][a-z0-9-]{4,28}[a-z0-9]/attestors/[A-Za-z0-9_-]+$", var.attestor))
    error_message = "attestor is projects/<project>/attestors/<name>."
  }
}

variable "own_registry" {
  description = "The functions' image repository (images.repository in the chart): no exemption may cover it."
  type        = string
  validation {
    condition = alltrue([
      for p in var.system_image_patterns :
      !startswith("${var.own_registry}/", replace(p, "/\\*+$/", "")) && !startswith(replace(p, "/\\*+$/", ""), var.own_registry)
    ])
    error_message = "a system image pattern covers the functions' own registry: their attestation would not be required."
  }
}

variable "system_image_patterns" {
  description = "Platform images admitted without our attestation (Binary Authorization name patterns: a trailing * within one path level, ** below it)."
  type        = list(string)
  default = [
    "gcr.io/knative-releases/knative.dev/operator/**",
    "gcr.io/knative-releases/knative.dev/serving/**",
    "gcr.io/knative-releases/knative.dev/net-kourier/**",
    "docker.io/envoyproxy/envoy*",
    "quay.io/argoproj/argocd*",
    "ghcr.io/dexidp/dex*",
    "public.ecr.aws/docker/library/redis*",
    "public.ecr.aws/docker/library/haproxy*",
  ]
  validation {
    condition     = alltrue([for p in var.system_image_patterns : length(regexall("^[a-z0-9.-]+\\.[a-z]+/[a-z0-9._/-]+\\*{0,2}$", p)) == 1])
    error_message = "each pattern is a registry host and a path, ending in * or ** at most: nothing like * or docker.io/* that admits everything."
  }
}

variable "enforcement_mode" {
  description = "ENFORCED_BLOCK_AND_AUDIT_LOG (refuse unattested images), or DRYRUN_AUDIT_LOG_ONLY while the digests an existing environment already runs are attested (infra/README.md)."
  type        = string
  default     = "ENFORCED_BLOCK_AND_AUDIT_LOG"
  validation {
    condition     = contains(["ENFORCED_BLOCK_AND_AUDIT_LOG", "DRYRUN_AUDIT_LOG_ONLY"], var.enforcement_mode)
    error_message = "enforcement_mode is ENFORCED_BLOCK_AND_AUDIT_LOG or DRYRUN_AUDIT_LOG_ONLY."
  }
}
