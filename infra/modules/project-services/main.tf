resource "google_project_service" "this" {
  for_each = toset(var.services)

  project = var.project_id
  service = each.value
  # Turning an API off breaks whatever uses it; removing one from the list only stops managing it.
  disable_on_destroy         = false
  disable_dependent_services = false
}
