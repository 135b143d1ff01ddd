output "attestor" {
  description = "The attestor every image of this environment needs."
  value       = var.attestor
}
