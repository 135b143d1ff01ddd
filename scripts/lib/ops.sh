# Shared by the operations scripts (scripts/canary, rollback, pin-scale, autosync, replay-dead-letters,
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
# failure is reported and the script goes on; a command still waiting after TRY_TIMEOUT seconds
# (default 60: gcloud waits for an operation a lost region never finishes) counts as failed.
try() {
  printf '+'; printf ' %q' "$@"; printf '\n'
  if [[ $EXECUTE == 1 ]]; then
    local code=0 limit=()
    [[ "$(type -t "$1")" == file ]] && limit=(timeout "${TRY_TIMEOUT:-60}")
    "${limit[@]}" "$@" || code=$?
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

# --- Step lists (scripts/failover, scripts/failback): scripts/lib/<name>-steps, one ordered list
# per procedure that the local back-end (tern_local::failover) runs too.

# parse_steps LIST_FILE "$@": takes --steps LIST (default: every step) and checks it against the
# list; the other arguments go to REST.
parse_steps() {
  STEPS_FILE="$1"; shift
  local last n part
  last="$(grep -c '^[0-9]' "$STEPS_FILE")"
  STEPS="1-$last"
  REST=()
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --steps) [[ $# -ge 2 ]] || die "--steps needs a list of steps, such as 3,5-7"; STEPS="$2"; shift ;;
      *) REST+=("$1") ;;
    esac
    shift
  done
  [[ "$STEPS" =~ ^[0-9]+(-[0-9]+)?(,[0-9]+(-[0-9]+)?)*$ ]] || die "--steps must list steps 1 to $last, such as 3,5-7, not $STEPS"
  for n in ${STEPS//[,-]/ }; do
    ((n >= 1 && n <= last)) || die "--steps must list steps 1 to $last, such as 3,5-7, not $STEPS"
  done
  for part in ${STEPS//,/ }; do
    [[ "$part" != *-* || ${part%-*} -le ${part#*-} ]] || die "--steps: the range $part runs backwards"
  done
  ALL_STEPS="1-$last"
}

# step N ID: step N's heading, from the list; the commands that follow run with `act`: with
# `try` when the list marks the step may-fail, else with `run`. The script's step N must be the
# list's step N (by id), so a reordered list cannot run one step's commands under another's
# heading and kind.
STEP_KIND=must
step() {
  local n id title
  IFS='|' read -r n id STEP_KIND title < <(grep "^$1|" "$STEPS_FILE")
  [[ "$id" == "$2" ]] || die "scripts/lib/$(basename "$STEPS_FILE"): step $1 is ${id:-missing}, this script's step $1 is $2"
  say "$n. $title ($id$([[ $STEP_KIND == may-fail ]] && echo ", expected to fail in a lost region"))"
}

act() { if [[ "$STEP_KIND" == may-fail ]]; then try "$@"; else run "$@"; fi; }

# wanted N: step N is in --steps (a comma-separated list of numbers and ranges).
wanted() {
  local part
  for part in ${STEPS//,/ }; do
    if [[ "$part" == *-* ]]; then
      (($1 >= ${part%-*} && $1 <= ${part#*-})) && return 0
    else
      (($1 == part)) && return 0
    fi
  done
  return 1
}

# expect WHAT GOT WANT: with --execute, stops unless GOT is WANT.
expect() {
  [[ $EXECUTE == 0 || "$2" == "$3" ]] || die "$1 is \"$2\", expected \"$3\": stopping"
}

# --- Cloud SQL and DNS moves shared by the failover and the failback.

# promote_with_ha INSTANCE: promotes a cross-region replica (resumable: an instance promoted
# already is not promoted again), then makes it regional with daily backups and point-in-time
# recovery, as a primary is (a promoted replica is zonal and has none), and checks it.
promote_with_ha() {
  local instance=$1 kind settings
  capture kind "<instance-type>" gcloud sql instances describe "$instance" --project="$PROJECT" --format="value(instanceType)"
  if [[ "$kind" == CLOUD_SQL_INSTANCE ]]; then
    say "   $instance is promoted already: going on to its availability and backups"
  else
    act gcloud sql instances promote-replica "$instance" --project="$PROJECT" --quiet
  fi
  say "   a promoted replica is zonal and has no backups: make it regional (a standby in another"
  say "   zone), with daily backups and point-in-time recovery, as the primary was"
  act gcloud sql instances patch "$instance" --project="$PROJECT" --quiet \
    --availability-type=REGIONAL --backup-start-time=03:00 \
    --enable-point-in-time-recovery --retained-transaction-log-days=7
  capture settings "<type,availability,pitr>" gcloud sql instances describe "$instance" --project="$PROJECT" \
    --format="value(instanceType,settings.availabilityType,settings.backupConfiguration.pointInTimeRecoveryEnabled)"
  expect "the promoted instance (type, availability, PITR)" "$settings" $'CLOUD_SQL_INSTANCE\tREGIONAL\tTrue'
}

# fence_instance INSTANCE LOCATION JOB: pause_job, then stop_instance.
fence_instance() {
  pause_job "$2" "$3"
  stop_instance "$1"
}

# pause_job LOCATION JOB: the outbox relay's scheduler job JOB in LOCATION paused, checked.
pause_job() {
  local location=$1 job=$2 got
  act gcloud scheduler jobs pause "$job" --location="$location" --project="$PROJECT"
  capture got "<job-state>" gcloud scheduler jobs describe "$job" --location="$location" --project="$PROJECT" --format="value(state)"
  expect "the scheduler job $job" "$got" PAUSED
}

# stop_instance INSTANCE: stopped (activation policy NEVER: no connections, its disk kept),
# checked.
stop_instance() {
  local instance=$1 got
  act gcloud sql instances patch "$instance" --project="$PROJECT" --quiet --activation-policy=NEVER
  capture got "<activation-policy,state>" gcloud sql instances describe "$instance" --project="$PROJECT" --format="value(settings.activationPolicy,state)"
  expect "the instance $instance (activation policy, state)" "$got" $'NEVER\tSTOPPED'
}

# switch_dns ZONE HOST ADDRESS_NAME: the host's A record answers the global address
# ADDRESS_NAME (TTL 60 s), then the host is probed until it answers 2xx or 3xx.
switch_dns() {
  local zone=$1 host=$2 address=$3 ip
  capture ip "<$address>" gcloud compute addresses describe "$address" --global --project="$PROJECT" --format="value(address)"
  act gcloud dns record-sets update "$host." --type=A --ttl=60 --zone="$zone" --project="$PROJECT" --rrdatas="$ip"
  say "   the public host answers from there (resolvers may hold the old record for the TTL)"
  act curl -fsS -o /dev/null -w "%{http_code}\n" --max-time 10 --retry 12 --retry-delay 10 --retry-all-errors "https://$host/"
}

# zone_of ENV: the environment's Cloud DNS zone name, from its tfvars.
zone_of() {
  sed -n "s/^ *name *= *\"\(tern-$1\)\"/\1/p" "$ops_root/infra/envs/$1/terraform.tfvars" | head -1
}


# read_database_instances ENV: DB_WRITER, DB_WRITER_REGION (primary|standby) and DB_REPLICA from
# the environment's tfvars (database_instances, one line), else the defaults: tern-ENV in the
# primary region, tern-ENV-replica.
read_database_instances() {
  local line field
  line="$(grep -E '^ *database_instances *=' "$ops_root/infra/envs/$1/terraform.tfvars" | head -1 || true)"
  field() { sed -n "s/.*[{,] *$1 *= *\"\([^\"]*\)\".*/\1/p" <<<"$line"; }
  DB_WRITER="$(field writer)"
  DB_WRITER_REGION="$(field writer_region)"
  DB_REPLICA="$(field replica)"
  if [[ -n "$line" && ! "$line" =~ =\ *null\ *$ ]] &&
    [[ -z "$DB_WRITER" || -z "$DB_WRITER_REGION" || -z "$DB_REPLICA" ]]; then
    die "infra/envs/$1/terraform.tfvars: write database_instances on one line, { writer = \"...\", writer_region = \"...\", replica = \"...\" }, or null"
  fi
  DB_WRITER="${DB_WRITER:-tern-$1}"
  DB_WRITER_REGION="${DB_WRITER_REGION:-primary}"
  DB_REPLICA="${DB_REPLICA:-tern-$1-replica}"
}
