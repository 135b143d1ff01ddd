# The project's Binary Authorization policy, which every GKE cluster of the environment enforces
# (infra/modules/gke: PROJECT_SINGLETON_POLICY_ENFORCE). An image is admitted only with an
# attestation by our build attestor (infra/modules/build-attestor): the functions, the migrate Job,
# anything else in the functions' namespace. The exemptions are explicit: Google's own system
# images (the global policy: kube-system, gke-*, gmp-*), and the platform's third-party images by
# registry path (system_image_patterns: Knative, Kourier and Envoy, Argo CD, Dex, Redis, HAProxy,
# which run in knative-serving, knative-operator, argocd and gateway-system only). The provider
# has no per-namespace rules (the API's kubernetesNamespaceAdmissionRules), so the exemption is by
# image, and no pattern may cover our own registry.

resource "google_binary_authorization_policy" "this" {
  project                       = var.project_id
  description                   = "Tern: every image needs our build's attestation, except Google's system images and the listed platform images."
  global_policy_evaluation_mode = "ENABLE"

  dynamic "admission_whitelist_patterns" {
    for_each = var.system_image_patterns
    content {
      name_pattern = admission_whitelist_patterns.value
    }
  }

  default_admission_rule {
    evaluation_mode         = "REQUIRE_ATTESTATION"
    enforcement_mode        = var.enforcement_mode
    require_attestations_by = [var.attestor]
  }
}
