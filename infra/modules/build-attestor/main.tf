# The attestor every image must be attested by before GKE admits it (Binary Authorization,
# infra/modules/binauthz-policy): a Cloud KMS signing key that only the images workflow's identity
# may use, a Container Analysis note the attestations hang from, and the attestor holding the
# key's public half. The images workflow signs the digest it built once the registry's scan passed
# (`gcloud beta container binauthz attestations sign-and-create`, docs/delivery.md).

resource "google_kms_key_ring" "build" {
  project  = var.project_id
  name     = var.name
  location = var.location
}

resource "google_kms_crypto_key" "attestor" {
  name     = "${var.name}-attestor"
  key_ring = google_kms_key_ring.build.id
  purpose  = "ASYMMETRIC_SIGN"
  version_template {
    algorithm        = "EC_SIGN_P256_SHA256"
    protection_level = "HSM"
  }
  lifecycle {
    prevent_destroy = true
  }
}

data "google_kms_crypto_key_version" "attestor" {
  crypto_key = google_kms_crypto_key.attestor.id
  version    = 1
}

resource "google_container_analysis_note" "build" {
  project = var.project_id
  name    = var.name
  attestation_authority {
    hint {
      human_readable_name = "Built from this repository's source and scanned by the Tern images workflow"
    }
  }
}

resource "google_binary_authorization_attestor" "build" {
  project     = var.project_id
  name        = var.name
  description = "Images the Tern images workflow built and the registry's scan passed."
  attestation_authority_note {
    note_reference = google_container_analysis_note.build.name
    public_keys {
      id = data.google_kms_crypto_key_version.attestor.id
      pkix_public_key {
        public_key_pem      = data.google_kms_crypto_key_version.attestor.public_key[0].pem
        signature_algorithm = "ECDSA_P256_SHA256"
      }
    }
  }
}

# The signer: sign with the key, attach occurrences to the note, read the attestor.
resource "google_kms_crypto_key_iam_member" "signer" {
  crypto_key_id = google_kms_crypto_key.attestor.id
  role          = "roles/cloudkms.signerVerifier"
  member        = var.signer
}

resource "google_container_analysis_note_iam_member" "signer" {
  project = var.project_id
  note    = google_container_analysis_note.build.name
  role    = "roles/containeranalysis.notes.attacher"
  member  = var.signer
}

# An attestation is an occurrence stored in this project.
resource "google_project_iam_member" "signer_occurrences" {
  project = var.project_id
  role    = "roles/containeranalysis.occurrences.editor"
  member  = var.signer
}

resource "google_binary_authorization_attestor_iam_member" "signer" {
  project  = var.project_id
  attestor = google_binary_authorization_attestor.build.name
  role     = "roles/binaryauthorization.attestorsViewer"
  member   = var.signer
}

# The verifiers: each environment's Binary Authorization service agent checks attestations
# against this attestor at admission.
resource "google_binary_authorization_attestor_iam_member" "verifier" {
  for_each = var.verifiers
  project  = var.project_id
  attestor = google_binary_authorization_attestor.build.name
  role     = "roles/binaryauthorization.attestorsVerifier"
  member   = each.value
}
