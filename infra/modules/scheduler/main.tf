resource "google_cloud_scheduler_job" "this" {
  for_each = { for j in var.jobs : j.name => j }

  project          = var.project_id
  region           = var.region
  name             = each.key
  description      = "Calls ${each.value.url} (route table schedule)."
  schedule         = each.value.schedule
  time_zone        = "Etc/UTC"
  attempt_deadline = "60s"
  paused           = var.paused

  retry_config {
    retry_count          = 3
    min_backoff_duration = "5s"
    max_backoff_duration = "60s"
  }

  http_target {
    http_method = "POST"
    uri         = each.value.url
    headers = {
      "Content-Type" = "application/json"
    }
    body = base64encode("{}")
    oidc_token {
      service_account_email = var.service_account
      audience              = each.value.url
    }
  }
}
