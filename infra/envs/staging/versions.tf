terraform {
  required_version = ">= 1.9.0"
  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "~> 6.14"
    }
  }
  # The bucket and this environment's own prefix: backend.hcl
  # (tofu init -backend-config=backend.hcl).
  backend "gcs" {}
}

provider "google" {
  project = var.project_id
  region  = "europe-west1"
  default_labels = {
    app         = "tern"
    environment = "staging"
    managed-by  = "opentofu"
  }
}
