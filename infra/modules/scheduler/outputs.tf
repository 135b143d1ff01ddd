output "jobs" {
  description = "job name -> the URL it calls."
  value       = { for n, j in google_cloud_scheduler_job.this : n => j.http_target[0].uri }
}
