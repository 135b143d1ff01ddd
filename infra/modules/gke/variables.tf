variable "project_id" {
  description = "The project of the cluster."
  type        = string
}

variable "name" {
  description = "The cluster's name (tern-<env>-primary, tern-prod-standby)."
  type        = string
  validation {
    condition     = can(regex("^[a-z]([-a-z0-9]{0,38}[a-z0-9])$", var.name))
    error_message = "name must be a lowercase name of at most 40 characters."
  }
}

variable "region" {
  description = "The region of the regional cluster."
  type        = string
}

variable "zones" {
  description = "The three zones the control plane and nodes span."
  type        = list(string)
  validation {
    condition     = length(var.zones) == 3 && length(distinct(var.zones)) == 3
    error_message = "zones must list three distinct zones."
  }
}

variable "network" {
  description = "The VPC's id."
  type        = string
}

variable "subnetwork" {
  description = "The subnet's self link in the cluster's region; it has the secondary ranges pods and services."
  type        = string
}

variable "release_channel" {
  description = "GKE release channel."
  type        = string
  default     = "REGULAR"
  validation {
    condition     = contains(["RAPID", "REGULAR", "STABLE"], var.release_channel)
    error_message = "release_channel must be RAPID, REGULAR or STABLE."
  }
}

variable "maintenance_window" {
  description = "When GKE may upgrade: a recurring window in UTC (RFC 3339 times and an RRULE)."
  type = object({
    start_time = string
    end_time   = string
    recurrence = string
  })
  default = {
    start_time = "2026-01-03T02:00:00Z"
    end_time   = "2026-01-03T08:00:00Z"
    recurrence = "FREQ=WEEKLY;BYDAY=SA,SU"
  }
}

variable "node_pool" {
  description = "The node pool: machine type, disk, and autoscaling bounds across all zones."
  type = object({
    machine_type = optional(string, "e2-standard-4")
    disk_size_gb = optional(number, 50)
    min_nodes    = optional(number, 3)
    max_nodes    = optional(number, 12)
    spot         = optional(bool, false)
  })
  default = {}
  validation {
    condition     = var.node_pool.min_nodes >= 0 && var.node_pool.max_nodes >= var.node_pool.min_nodes && var.node_pool.max_nodes <= 300
    error_message = "node_pool needs 0 <= min_nodes <= max_nodes <= 300."
  }
}

variable "deletion_protection" {
  description = "Refuse to destroy the cluster (set false only to tear an environment down)."
  type        = bool
  default     = true
}

variable "labels" {
  description = "Labels for the cluster and its nodes."
  type        = map(string)
  default     = {}
}
