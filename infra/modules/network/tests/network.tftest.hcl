mock_provider "google" {}

variables {
  project_id = "tern-test"
  name       = "tern-test"
  subnets = {
    europe-west1 = { cidr = "10.10.0.0/20", pods_cidr = "10.40.0.0/16", services_cidr = "10.10.16.0/20" }
    europe-west4 = { cidr = "10.10.64.0/20", pods_cidr = "10.41.0.0/16", services_cidr = "10.10.80.0/20" }
  }
  private_services_cidr = "10.10.32.0/20"
}

run "subnets_have_pod_and_service_ranges_flow_logs_and_private_google_access" {
  command = plan

  assert {
    condition     = length(google_compute_subnetwork.this) == 2
    error_message = "one subnet per region"
  }
  assert {
    condition = alltrue([for s in google_compute_subnetwork.this :
      s.private_ip_google_access && length(s.log_config) == 1 &&
    toset([for r in s.secondary_ip_range : r.range_name]) == toset(["pods", "services"])])
    error_message = "every subnet needs Private Google Access, flow logs, and the pods and services ranges"
  }
  assert {
    condition     = google_compute_network.this.auto_create_subnetworks == false
    error_message = "no auto-created subnets"
  }
}

run "cloud_sql_gets_a_private_services_range_and_nodes_get_nat" {
  command = plan

  assert {
    condition     = google_compute_global_address.private_services.purpose == "VPC_PEERING" && google_compute_global_address.private_services.prefix_length == 20
    error_message = "private services access needs a VPC_PEERING range of the configured size"
  }
  assert {
    condition     = length(google_compute_router_nat.this) == 2
    error_message = "one Cloud NAT per region"
  }
  assert {
    condition     = google_compute_firewall.deny_all_ingress.priority == 65534 && length(google_compute_firewall.deny_all_ingress.deny) == 1
    error_message = "ingress is denied unless allowed"
  }
  assert {
    condition     = google_dns_record_set.googleapis_cname.rrdatas == tolist(["private.googleapis.com."])
    error_message = "googleapis.com must resolve to private.googleapis.com inside the VPC"
  }
}

run "a_bad_range_is_refused" {
  command = plan
  variables {
    private_services_cidr = "10.10.32.0/28"
  }
  expect_failures = [var.private_services_cidr]
}
