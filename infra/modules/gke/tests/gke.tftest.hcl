mock_provider "google" {}

variables {
  project_id = "tern-test"
  name       = "tern-test-primary"
  region     = "europe-west1"
  zones      = ["europe-west1-b", "europe-west1-c", "europe-west1-d"]
  network    = "projects/tern-test/global/networks/tern-test"
  subnetwork = "projects/tern-test/regions/europe-west1/subnetworks/tern-test-europe-west1"
}

run "the_cluster_is_regional_private_and_hardened" {
  command = plan

  assert {
    condition     = google_container_cluster.this.location == "europe-west1" && length(google_container_cluster.this.node_locations) == 3
    error_message = "a regional cluster across three zones"
  }
  assert {
    condition     = google_container_cluster.this.private_cluster_config[0].enable_private_nodes
    error_message = "nodes must be private"
  }
  assert {
    condition     = google_container_cluster.this.control_plane_endpoints_config[0].dns_endpoint_config[0].allow_external_traffic && google_container_cluster.this.master_authorized_networks_config[0].gcp_public_cidrs_access_enabled == false
    error_message = "the control plane is reached through its DNS endpoint, with no public CIDR access"
  }
  assert {
    condition     = google_container_cluster.this.workload_identity_config[0].workload_pool == "tern-test.svc.id.goog"
    error_message = "Workload Identity must be on"
  }
  assert {
    condition     = google_container_cluster.this.datapath_provider == "ADVANCED_DATAPATH"
    error_message = "Dataplane V2 must be on"
  }
  assert {
    condition     = google_container_cluster.this.binary_authorization[0].evaluation_mode == "PROJECT_SINGLETON_POLICY_ENFORCE"
    error_message = "Binary Authorization must be enforced"
  }
  assert {
    condition     = google_container_cluster.this.monitoring_config[0].managed_prometheus[0].enabled
    error_message = "Managed Prometheus must be on"
  }
  assert {
    condition     = google_container_cluster.this.deletion_protection && google_container_cluster.this.release_channel[0].channel == "REGULAR"
    error_message = "deletion protection and a release channel"
  }
  assert {
    condition     = length(google_container_cluster.this.maintenance_policy[0].recurring_window) == 1
    error_message = "a maintenance window"
  }
}

run "nodes_are_shielded_autoscaled_and_least_privileged" {
  command = plan

  assert {
    condition     = google_container_node_pool.default.node_config[0].shielded_instance_config[0].enable_secure_boot && google_container_node_pool.default.node_config[0].shielded_instance_config[0].enable_integrity_monitoring
    error_message = "shielded nodes with secure boot"
  }
  assert {
    condition     = google_container_node_pool.default.node_config[0].workload_metadata_config[0].mode == "GKE_METADATA"
    error_message = "pods see the GKE metadata server, not the node's"
  }
  assert {
    condition     = google_container_node_pool.default.autoscaling[0].total_min_node_count == 3 && google_container_node_pool.default.autoscaling[0].total_max_node_count == 12
    error_message = "autoscaling bounds"
  }
  assert {
    condition     = toset(keys(google_project_iam_member.nodes)) == toset(["roles/logging.logWriter", "roles/monitoring.metricWriter", "roles/monitoring.viewer", "roles/stackdriver.resourceMetadata.writer", "roles/autoscaling.metricsWriter"])
    error_message = "the node identity holds only the node roles"
  }
}

run "two_zones_are_refused" {
  command = plan
  variables {
    zones = ["europe-west1-b", "europe-west1-c"]
  }
  expect_failures = [var.zones]
}
