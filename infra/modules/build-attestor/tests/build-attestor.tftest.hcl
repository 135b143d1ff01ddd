mock_provider "google" {
  mock_data "google_kms_crypto_key_version" {
    defaults = {
      id         = "//cloudkms.googleapis.com/v1/projects/tern-ops/locations/europe/keyRings/tern-build/cryptoKeys/tern-build-attestor/cryptoKeyVersions/1"
      public_key = [{ pem = "-----BEGIN PUBLIC KEY-----\nMFkw\n-----END PUBLIC KEY-----\n", algorithm = "EC_SIGN_P256_SHA256" }]
    }
  }
}

variables {
  project_id = "tern-ops"
  signer     = "serviceAccount:ci-images@tern-ops.iam.gserviceaccount.com"
  verifiers  = { prod = "serviceAccount:service-123@gcp-sa-binaryauthorization.iam.gserviceaccount.com" }
}

run "an_hsm_key_only_the_images_identity_signs_with" {
  command = plan
  # The key's id as the API returns it, known at plan (prevent_destroy rules out an apply).
  override_resource {
    target = google_kms_crypto_key.attestor
    values = {
      id = "projects/tern-ops/locations/europe/keyRings/tern-build/cryptoKeys/tern-build-attestor"
    }
  }

  assert {
    condition     = google_kms_crypto_key.attestor.purpose == "ASYMMETRIC_SIGN" && google_kms_crypto_key.attestor.version_template[0].algorithm == "EC_SIGN_P256_SHA256" && google_kms_crypto_key.attestor.version_template[0].protection_level == "HSM"
    error_message = "an asymmetric P-256 signing key in an HSM"
  }
  assert {
    condition     = google_kms_crypto_key_iam_member.signer.member == var.signer && google_kms_crypto_key_iam_member.signer.role == "roles/cloudkms.signerVerifier"
    error_message = "the images identity signs"
  }
  assert {
    condition     = google_container_analysis_note_iam_member.signer.role == "roles/containeranalysis.notes.attacher"
    error_message = "the signer attaches attestations to the note"
  }
  assert {
    condition     = google_project_iam_member.signer_occurrences.role == "roles/containeranalysis.occurrences.editor" && google_project_iam_member.signer_occurrences.member == var.signer
    error_message = "the signer stores the attestation occurrences"
  }
  assert {
    condition     = google_binary_authorization_attestor.build.attestation_authority_note[0].public_keys[0].pkix_public_key[0].signature_algorithm == "ECDSA_P256_SHA256"
    error_message = "the attestor holds the key's public half"
  }
  assert {
    condition     = google_binary_authorization_attestor_iam_member.verifier["prod"].role == "roles/binaryauthorization.attestorsVerifier"
    error_message = "each environment's Binary Authorization agent verifies"
  }
  assert {
    condition     = output.attestor == "projects/tern-ops/attestors/tern-build"
    error_message = "the attestor's full name, as the policies reference it"
  }
  assert {
    condition     = output.key_version == "projects/tern-ops/locations/europe/keyRings/tern-build/cryptoKeys/tern-build-attestor/cryptoKeyVersions/1"
    error_message = "the key version as gcloud --keyversion takes it"
  }
}

run "only_a_service_account_signs" {
  command = plan
  variables {
    signer = "user:someone@example.com"
  }
  expect_failures = [var.signer]
}
