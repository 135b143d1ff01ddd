variable "project_id" {
  description = "The ops project holding the workload identity pool and the CI service accounts."
  type        = string
}

variable "repository" {
  description = "The only GitHub repository allowed to authenticate (owner/name)."
  type        = string
  validation {
    condition     = can(regex("^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$", var.repository))
    error_message = "repository must be owner/name."
  }
}

variable "environments" {
  description = "Deployment environment -> the project it deploys. Each gets a plan identity (GitHub environment <env>-plan) and an apply identity (GitHub environment <env>)."
  type        = map(string)
}

variable "apply_roles" {
  description = "Roles the apply identity holds on its environment's project."
  type        = list(string)
  # Predefined roles for what infra/stack manages; no basic roles (owner, editor).
  default = [
    "roles/compute.networkAdmin",
    "roles/compute.securityAdmin",
    "roles/compute.loadBalancerAdmin",
    "roles/container.clusterAdmin",
    "roles/cloudsql.admin",
    "roles/pubsub.admin",
    "roles/secretmanager.admin",
    "roles/cloudscheduler.admin",
    "roles/dns.admin",
    "roles/certificatemanager.owner",
    "roles/monitoring.editor",
    "roles/servicenetworking.networksAdmin",
    "roles/serviceusage.serviceUsageAdmin",
    "roles/iam.serviceAccountAdmin",
    "roles/iam.serviceAccountUser",
    "roles/resourcemanager.projectIamAdmin",
  ]
}

variable "plan_roles" {
  description = "Read-only roles the plan identity holds on its environment's project (no basic roles)."
  type        = list(string)
  default = [
    "roles/compute.viewer",
    "roles/container.clusterViewer",
    "roles/cloudsql.viewer",
    "roles/pubsub.viewer",
    "roles/secretmanager.viewer",
    "roles/cloudscheduler.viewer",
    "roles/dns.reader",
    "roles/certificatemanager.viewer",
    "roles/monitoring.viewer",
    "roles/iam.securityReviewer",
    "roles/serviceusage.serviceUsageViewer",
  ]
}
