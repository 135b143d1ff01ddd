terraform {
  required_version = ">= 1.9.0"
  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "~> 6.14"
    }
  }
  # The first apply runs with local state; then `tofu init -migrate-state -backend-config=backend.hcl`
  # moves it into the bucket it created (infra/README.md, step 3).
  backend "gcs" {}
}

provider "google" {
  project = var.ops_project_id
  default_labels = {
    app        = "tern"
    managed-by = "opentofu"
  }
}
