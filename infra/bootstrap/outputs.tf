output "state_bucket" {
  description = "The state bucket (each environment's backend.hcl)."
  value       = module.state.name
}

output "registry" {
  description = "The image repository (chart images.repository)."
  value       = module.registry.repository
}

output "github" {
  description = "GitHub settings (docs/delivery.md): the provider, and the identity per GitHub environment."
  value = {
    GCP_WORKLOAD_IDENTITY_PROVIDER = module.ci.workload_identity_provider
    images                         = module.ci.images_service_account
    plan                           = module.ci.plan_service_accounts
    apply                          = module.ci.apply_service_accounts
    GCP_ATTESTOR                   = module.attestor.attestor
    GCP_ATTESTOR_KEY_VERSION       = module.attestor.key_version
  }
}

output "build_attestor" {
  description = "The attestor every image needs (each environment's build_attestor)."
  value       = module.attestor.attestor
}
