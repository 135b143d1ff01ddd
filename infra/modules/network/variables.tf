variable "project_id" {
  description = "The project of the VPC."
  type        = string
}

variable "name" {
  description = "The VPC's name; subnets, router and NAT are named after it."
  type        = string
  validation {
    condition     = can(regex("^[a-z]([-a-z0-9]{0,40}[a-z0-9])?$", var.name))
    error_message = "name must be a lowercase RFC 1035 name of at most 42 characters."
  }
}

variable "subnets" {
  description = "One subnet per region: its primary range (nodes) and the secondary ranges GKE uses for pods and services."
  type = map(object({
    cidr          = string
    pods_cidr     = string
    services_cidr = string
  }))
  validation {
    condition = alltrue(flatten([for r, s in var.subnets : [
      can(cidrhost(s.cidr, 0)), can(cidrhost(s.pods_cidr, 0)), can(cidrhost(s.services_cidr, 0)),
      can(regex("^[a-z]+-[a-z]+[0-9]$", r)),
    ]]))
    error_message = "Each key must be a region (europe-west1) and each range a CIDR block."
  }
}

variable "private_services_cidr" {
  description = "The range reserved for private services access (Cloud SQL's private IPs), as a CIDR block."
  type        = string
  validation {
    condition     = can(cidrhost(var.private_services_cidr, 0)) && tonumber(split("/", var.private_services_cidr)[1]) <= 24
    error_message = "private_services_cidr must be a CIDR block of /24 or larger."
  }
}

variable "flow_log_sampling" {
  description = "Share of flows VPC flow logs sample (0 to 1)."
  type        = number
  default     = 0.5
  validation {
    condition     = var.flow_log_sampling > 0 && var.flow_log_sampling <= 1
    error_message = "flow_log_sampling must be in (0, 1]."
  }
}
