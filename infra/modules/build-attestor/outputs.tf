output "attestor" {
  description = "The attestor's full name (each environment's build_attestor; the images workflow's GCP_ATTESTOR)."
  value       = "projects/${var.project_id}/attestors/${google_binary_authorization_attestor.build.name}"
}

output "key_version" {
  description = "The signing key version the images workflow signs with (GCP_ATTESTOR_KEY_VERSION)."
  # The key's first version, the one the attestor holds (the data source's own id has a
  # //cloudkms.googleapis.com/v1/ prefix that gcloud's --keyversion does not take).
  value = "${google_kms_crypto_key.attestor.id}/cryptoKeyVersions/1"
}

output "verifiers" {
  description = "The labels of the identities that may verify attestations."
  value       = keys(var.verifiers)
}
