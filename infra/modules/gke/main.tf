# The nodes' own identity: only what nodes need (logs, metrics, pulling images). Workloads never
# use it: Workload Identity gives each function its own.
resource "google_service_account" "nodes" {
  project      = var.project_id
  account_id   = "${var.name}-nodes"
  display_name = "GKE nodes of ${var.name}"
}

resource "google_project_iam_member" "nodes" {
  for_each = toset([
    "roles/logging.logWriter",
    "roles/monitoring.metricWriter",
    "roles/monitoring.viewer",
    "roles/stackdriver.resourceMetadata.writer",
    "roles/autoscaling.metricsWriter",
  ])

  project = var.project_id
  role    = each.value
  member  = "serviceAccount:${google_service_account.nodes.email}"
}

resource "google_container_cluster" "this" {
  # checkov:skip=CKV_GCP_12:NetworkPolicy is enforced by Dataplane V2 (datapath_provider ADVANCED_DATAPATH), which replaces the Calico network_policy addon.
  # checkov:skip=CKV_GCP_24:PodSecurityPolicy was removed from Kubernetes in 1.25; Pod Security admission (namespace labels in knative/platform) enforces "restricted".
  # checkov:skip=CKV_GCP_69:The default node pool is removed; the managed pool below sets GKE_METADATA.
  # checkov:skip=CKV_GCP_68:The default node pool is removed; the managed pool below enables secure boot.
  # checkov:skip=CKV_GCP_72:The default node pool is removed; the managed pool below enables integrity monitoring.
  # checkov:skip=CKV_GCP_13:Client certificates are disabled in master_auth; checkov does not read the nested block.
  # checkov:skip=CKV_GCP_65:Google Groups for RBAC needs a Workspace/Cloud Identity group domain this repository cannot assume; access is IAM-based.
  # checkov:skip=CKV_GCP_66:Binary Authorization is enabled (evaluation_mode PROJECT_SINGLETON_POLICY_ENFORCE); checkov looks for the deprecated enable_binary_authorization flag.
  # checkov:skip=CKV_GCP_20:The control plane has no reachable IP endpoint (DNS endpoint with IAM only; master_authorized_networks allow no range).
  # checkov:skip=CKV_GCP_18:The control plane is reached through its DNS endpoint with IAM; the IP endpoint allows no network.
  # checkov:skip=CKV_GCP_25:Private nodes are on (private_cluster_config.enable_private_nodes); the private endpoint is replaced by the DNS endpoint.
  name     = var.name
  project  = var.project_id
  location = var.region
  # Three zones: the control plane is regional, and nodes spread across them.
  node_locations = var.zones

  network         = var.network
  subnetwork      = var.subnetwork
  networking_mode = "VPC_NATIVE"
  ip_allocation_policy {
    cluster_secondary_range_name  = "pods"
    services_secondary_range_name = "services"
  }

  # Nodes have no public IPs.
  private_cluster_config {
    enable_private_nodes = true
  }

  # The control plane is reached through its DNS endpoint, authorised by IAM
  # (container.clusters.connect), from anywhere an operator or Argo CD has credentials; no IP
  # range is open to it.
  control_plane_endpoints_config {
    dns_endpoint_config {
      allow_external_traffic = true
    }
  }
  master_authorized_networks_config {
    gcp_public_cidrs_access_enabled = false
  }
  master_auth {
    client_certificate_config {
      issue_client_certificate = false
    }
  }

  remove_default_node_pool = true
  initial_node_count       = 1

  workload_identity_config {
    workload_pool = "${var.project_id}.svc.id.goog"
  }
  datapath_provider           = "ADVANCED_DATAPATH"
  enable_shielded_nodes       = true
  enable_intranode_visibility = true

  release_channel {
    channel = var.release_channel
  }
  maintenance_policy {
    recurring_window {
      start_time = var.maintenance_window.start_time
      end_time   = var.maintenance_window.end_time
      recurrence = var.maintenance_window.recurrence
    }
  }

  binary_authorization {
    evaluation_mode = "PROJECT_SINGLETON_POLICY_ENFORCE"
  }
  security_posture_config {
    mode               = "BASIC"
    vulnerability_mode = "VULNERABILITY_BASIC"
  }

  gateway_api_config {
    channel = "CHANNEL_STANDARD"
  }
  addons_config {
    http_load_balancing {
      disabled = false
    }
    horizontal_pod_autoscaling {
      disabled = false
    }
  }

  logging_config {
    enable_components = ["SYSTEM_COMPONENTS", "WORKLOADS"]
  }
  monitoring_config {
    enable_components = ["SYSTEM_COMPONENTS"]
    managed_prometheus {
      enabled = true
    }
  }

  resource_labels     = var.labels
  deletion_protection = var.deletion_protection
}

resource "google_container_node_pool" "default" {
  name     = "default"
  project  = var.project_id
  location = var.region
  cluster  = google_container_cluster.this.name

  autoscaling {
    total_min_node_count = var.node_pool.min_nodes
    total_max_node_count = var.node_pool.max_nodes
    location_policy      = "BALANCED"
  }
  management {
    auto_repair  = true
    auto_upgrade = true
  }
  upgrade_settings {
    max_surge       = 1
    max_unavailable = 0
  }

  node_config {
    machine_type    = var.node_pool.machine_type
    disk_size_gb    = var.node_pool.disk_size_gb
    disk_type       = "pd-balanced"
    image_type      = "COS_CONTAINERD"
    spot            = var.node_pool.spot
    service_account = google_service_account.nodes.email
    oauth_scopes    = ["https://www.googleapis.com/auth/cloud-platform"]
    labels          = var.labels
    metadata = {
      disable-legacy-endpoints = "true"
    }
    shielded_instance_config {
      enable_secure_boot          = true
      enable_integrity_monitoring = true
    }
    workload_metadata_config {
      mode = "GKE_METADATA"
    }
  }
}
