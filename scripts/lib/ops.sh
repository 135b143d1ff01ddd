# Shared by the operations scripts (scripts/canary, rollback, pin-scale, selfheal, replay-dead-letters,
# failover). Source it; then `parse_common "$@"` and `run CMD...`.
#
# Every script prints each command before it runs it, and by default only prints (dry run):
# pass --execute to run them. Targets come from the committed values, so the printed commands
# are the exact ones for that environment.

set -euo pipefail
ops_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
EXECUTE=0
ENVIRONMENT=prod
CLUSTER_ROLE=primary
NAMESPACE=tern
ARGS=()
# `kn service update` waits until the new revision is ready (up to kn's 600 s); --no-wait makes
# it return once the change is stored (a cluster whose pods cannot start, or a hurry).
KN_WAIT=()

# parse_common "$@": takes --execute, --dry-run, --no-wait, --env ENV, --cluster
# primary|standby; the rest goes to ARGS.
parse_common() {
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --execute) EXECUTE=1 ;;
      --dry-run) EXECUTE=0 ;;
      --no-wait) KN_WAIT=(--no-wait) ;;
      --env) ENVIRONMENT="${2:?--env needs dev, staging or prod}"; shift ;;
      --cluster) CLUSTER_ROLE="${2:?--cluster needs primary or standby}"; shift ;;
      *) ARGS+=("$1") ;;
    esac
    shift
  done
  case "$ENVIRONMENT" in dev|staging|prod) ;; *) die "--env must be dev, staging or prod, not $ENVIRONMENT" ;; esac
  case "$CLUSTER_ROLE" in primary|standby) ;; *) die "--cluster must be primary or standby, not $CLUSTER_ROLE" ;; esac
  local values="$ops_root/knative/chart/tern-functions/env/$ENVIRONMENT.yaml"
  # An environment has a standby cluster when the chart has values for it (so a rehearsal on
  # staging needs only a staging-standby: infra's standby_region and env/staging-standby.yaml).
  if [[ "$CLUSTER_ROLE" == standby && ! -f "${values%.yaml}-standby.yaml" ]]; then
    local with=() f
    for f in "$ops_root"/knative/chart/tern-functions/env/*-standby.yaml; do with+=("$(basename "${f%-standby.yaml}")"); done
    die "$ENVIRONMENT has no standby cluster (no env/$ENVIRONMENT-standby.yaml); environments with one: ${with[*]}"
  fi
  PROJECT="$(value "$values" project)"
  REGION="$(value "$values" region)"
  HOST="$(sed -n '/^hosts:/{n;s/^ *- *//p;}' "$values")"
  if [[ "$CLUSTER_ROLE" == standby ]]; then
    REGION="$(value "$ops_root/knative/chart/tern-functions/env/$ENVIRONMENT-standby.yaml" region)"
  fi
  CLUSTER="tern-$ENVIRONMENT-$CLUSTER_ROLE"
  KUBE_CONTEXT="gke_${PROJECT}_${REGION}_${CLUSTER}"
  ARGO_APP="tern-functions-$CLUSTER"
  if [[ $EXECUTE == 0 ]]; then
    echo "# dry run: printing the commands for $ENVIRONMENT/$CLUSTER_ROLE ($KUBE_CONTEXT); --execute runs them"
  fi
}

# value FILE KEY: the first `KEY: value` in a values file.
value() { sed -n "s/^ *$2: *//p" "$1" | head -1 | tr -d '"'; }

die() { echo "$(basename "$0"): $*" >&2; exit 2; }

# run CMD...: prints the command, and runs it with --execute.
run() {
  printf '+'; printf ' %q' "$@"; printf '\n'
  if [[ $EXECUTE == 1 ]]; then "$@"; fi
}

# try CMD...: like run, for a step that is expected to fail in an outage (a dead region): a
# failure is reported and the script goes on.
try() {
  printf '+'; printf ' %q' "$@"; printf '\n'
  if [[ $EXECUTE == 1 ]]; then
    local code=0
    "$@" || code=$?
    ((code == 0)) || echo "# failed with exit $code; expected when the primary region is down, going on"
  fi
  return 0
}

# capture VAR PLACEHOLDER CMD...: prints the command; with --execute stores its output in VAR,
# otherwise stores PLACEHOLDER (so later printed commands show where the value goes). A command
# that fails, or finds nothing, stops the script: no later command runs with an empty value.
capture() {
  local var=$1 placeholder=$2 out; shift 2
  printf '+'; printf ' %q' "$@"; printf '\n'
  if [[ $EXECUTE == 1 ]]; then
    out="$("$@")" || die "$1 failed (exit $?): no $placeholder, stopping"
    [[ -n "$out" ]] || die "$1 found no $placeholder, stopping"
    printf -v "$var" '%s' "$out"
  else
    printf -v "$var" '%s' "$placeholder"
  fi
}

# say TEXT: a step heading.
say() { echo "# $*"; }

# The kn and kubectl context flags for the chosen cluster.
kn_ctx() { echo "--context=$KUBE_CONTEXT"; }
