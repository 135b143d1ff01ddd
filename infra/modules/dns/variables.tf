variable "project_id" {
  description = "The project of the zone."
  type        = string
}

variable "zone_name" {
  description = "The managed zone's resource name."
  type        = string
}

variable "dns_name" {
  description = "The zone's domain, with a trailing dot (orders.example.com.)."
  type        = string
  validation {
    condition     = endswith(var.dns_name, ".")
    error_message = "dns_name must end with a dot."
  }
}

variable "hosts" {
  description = "Host names (in the zone) that point at the Gateway."
  type        = list(string)
}

variable "standby_hosts" {
  description = "Hosts (among hosts) that always answer with the standby Gateway: the standby region's own test host."
  type        = list(string)
  default     = []
  validation {
    condition     = alltrue([for h in var.standby_hosts : contains(var.hosts, h)])
    error_message = "standby_hosts must be among hosts."
  }
}

variable "primary_address" {
  description = "The primary cluster's Gateway IP."
  type        = string
}

variable "standby_address" {
  description = "The standby region's Gateway IP (prod); null without a standby."
  type        = string
  default     = null
}

variable "active" {
  description = <<-EOT
    Which Gateway the hosts answer with: primary, or standby after a region failover
    (scripts/failover switches the record at once; committing active = "standby" keeps OpenTofu
    from switching it back). docs/decisions/0012-region-failover-by-dns.md.
  EOT
  type        = string
  default     = "primary"
  validation {
    condition     = contains(["primary", "standby"], var.active)
    error_message = "active must be primary or standby."
  }
}

variable "alert_channels" {
  description = "Cloud Monitoring notification channels paged when the public host stops answering."
  type        = list(string)
  default     = []
}

variable "extra_records" {
  description = "Other records (certificate DNS authorizations), keyed by a label known at plan time: {name, type, rrdatas}."
  type = map(object({
    name    = string
    type    = string
    rrdatas = list(string)
  }))
  default = {}
}

variable "ttl" {
  description = "TTL of the host records; low so a failover reaches clients quickly."
  type        = number
  default     = 60
}
