#!/usr/bin/env bash
# The container images and the compose stack (compose.yaml, docs/operations.md "Containers").
#
#   scripts/containers.sh setup     install podman, runc, podman-compose and mmdebstrap (Debian, as root) and the
#                                   containers.conf settings podman needs here; build the base image if needed
#   scripts/containers.sh build     stage wheels and jars in .containers/, build the four images
#   scripts/containers.sh up        build, then start the ring, the schema step, the replicas and the proxy; wait
#                                   until the published port serves
#   scripts/containers.sh down      stop and remove the stack (BB_DOWN_VOLUMES=1: its volumes, i.e. all data, too)
#   scripts/containers.sh job NAME [ARGS…]  a one-off job service of compose.yaml (priors, audit) with its arguments
#   scripts/containers.sh compose ARGS…   the compose tool on this project (e.g. `compose stop cassandra-2`)
#
# Environment: BB_PROJECT (compose project name, banner-bandit), BB_PORT (published port, 8080), BB_TAG (latest),
# BASE_IMAGE (default: localhost/bookworm-base when it exists or no registry answers, else Debian's slim image),
# COMPOSE (the compose command; default podman-compose when podman is installed, else docker compose),
# SECRET_KEY / ADMIN_API_TOKEN (default: .run/env, generated once as `make run` does).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
stage=$root/.containers
project=${BB_PROJECT:-banner-bandit}
tag=${BB_TAG:-latest}
public_base=docker.io/library/debian:bookworm-slim
local_base=localhost/bookworm-base

say() { printf '[containers] %s\n' "$*" >&2; }

engine() {
  if command -v podman >/dev/null; then echo podman; elif command -v docker >/dev/null; then echo docker; else
    say "neither podman nor docker is installed: run scripts/containers.sh setup (Debian, as root)"; exit 1; fi
}

compose() {
  local cmd
  if [[ -n ${COMPOSE:-} ]]; then read -r -a cmd <<<"$COMPOSE"
  elif [[ $(engine) == podman ]]; then cmd=(podman-compose)
  else cmd=(docker compose); fi
  (cd "$root" && export BB_TAG="$tag" BASE_IMAGE="${BASE_IMAGE:-$public_base}" && secrets && "${cmd[@]}" -p "$project" -f compose.yaml "$@")
}

secrets() {   # SECRET_KEY and ADMIN_API_TOKEN from the environment, else from .run/env (generated once)
  if [[ -z ${SECRET_KEY:-} || -z ${ADMIN_API_TOKEN:-} ]]; then
    if [[ ! -f $root/.run/env ]]; then
      mkdir -p "$root/.run"
      (umask 077; { echo "ADMIN_API_TOKEN=$(python3 -c 'import secrets; print(secrets.token_urlsafe(24))')"
                    echo "SECRET_KEY=$(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')"; } >"$root/.run/env")
    fi
    local token secret
    token=$(sed -n 's/^ADMIN_API_TOKEN=//p' "$root/.run/env"); secret=$(sed -n 's/^SECRET_KEY=//p' "$root/.run/env")
    export ADMIN_API_TOKEN=${ADMIN_API_TOKEN:-$token} SECRET_KEY=${SECRET_KEY:-$secret}
  fi
}

# -- setup ---------------------------------------------------------------------------------------------------------

setup() {
  local missing=()
  command -v podman >/dev/null || missing+=(podman)
  command -v runc >/dev/null || missing+=(runc)
  command -v podman-compose >/dev/null || missing+=(podman-compose)
  command -v mmdebstrap >/dev/null || missing+=(mmdebstrap)
  if (( ${#missing[@]} )); then
    say "installing ${missing[*]} (apt)…"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q "${missing[@]}" >/dev/null 2>&1 || { apt-get update -q >/dev/null; apt-get install -y -q "${missing[@]}" >/dev/null; }
  fi
  configure_podman
  base_image >/dev/null
}

configure_podman() {
  # Podman's default ulimits for a container (nofile 1048576, …) are above what a sandbox or a CI runner may allow
  # its processes (runc then fails: "error setting rlimits"); crun, when installed, does not run on hybrid cgroup v1
  # hosts. Both settings are written once, and only when containers.conf says nothing of them.
  local conf=/etc/containers/containers.conf nofile nproc
  mkdir -p /etc/containers
  touch "$conf"
  if ! grep -q '^\s*default_ulimits' "$conf"; then
    nofile=$(ulimit -Hn); nproc=$(ulimit -Hu)
    [[ $nofile == unlimited || $nofile -gt 1048576 ]] && nofile=1048576
    [[ $nproc == unlimited || $nproc -gt 32768 ]] && nproc=32768
    say "containers.conf: default_ulimits nofile=$nofile, nproc=$nproc (this host's hard limits)"
    add_conf_line containers "default_ulimits = [\"nofile=$nofile:$nofile\", \"nproc=$nproc:$nproc\"]"
  fi
  if ! grep -q '^\s*runtime\s*=' "$conf"; then
    say "containers.conf: runtime = runc"
    add_conf_line engine 'runtime = "runc"'
  fi
}

add_conf_line() {   # add_conf_line SECTION LINE: LINE into [SECTION] of containers.conf (the section made if absent)
  local conf=/etc/containers/containers.conf section=$1 line=$2
  if grep -q "^\[$section\]" "$conf"; then
    sed -i "/^\[$section\]/a $line" "$conf"
  else
    printf '\n[%s]\n%s\n' "$section" "$line" >>"$conf"
  fi
}

base_image() {   # the image the builds start from (printed); builds the local one when needed
  if [[ -n ${BASE_IMAGE:-} ]]; then echo "$BASE_IMAGE"; return; fi
  local e; e=$(engine)
  if "$e" image exists "$local_base" 2>/dev/null || "$e" image inspect "$local_base" >/dev/null 2>&1; then
    echo "$local_base"; return
  fi
  if [[ ${BB_LOCAL_BASE:-} != 1 ]] && timeout 60 "$e" pull -q "$public_base" >/dev/null 2>&1; then
    echo "$public_base"; return
  fi
  build_local_base >&2
  echo "$local_base"
}

build_local_base() {
  # No registry answers: a minimal Debian bookworm from this host's own Debian mirror (its apt sources).
  command -v mmdebstrap >/dev/null || { say "mmdebstrap is missing: run scripts/containers.sh setup"; exit 1; }
  local mirrors=() f tmp
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    [[ -f $f ]] && grep -qE '^[^#]*(deb\.debian\.org|/debian(-security)?[ /]|/debian(-security)?$)' "$f" && mirrors+=("$f")
  done
  (( ${#mirrors[@]} )) || mirrors=("deb http://deb.debian.org/debian bookworm main")
  tmp=$(mktemp -d)
  say "building $local_base with mmdebstrap from ${mirrors[*]} (about 20 s)…"
  mmdebstrap --quiet --variant=minbase bookworm "$tmp/base.tar" "${mirrors[@]}"
  "$(engine)" import "$tmp/base.tar" "$local_base" >/dev/null
  rm -rf "$tmp"
  say "$local_base ready"
}

# -- build ---------------------------------------------------------------------------------------------------------

stage_files() {
  "$here/cassandra.sh" fetch
  "$here/spark.sh" fetch
  local cassandra_lib=${CASSANDRA_LIB:-$root/.cassandra/lib}
  local spark_jars=${SPARK_JARS_DIR:-$root/.spark/jars}
  sync_dir "$cassandra_lib" "$stage/cassandra-lib"
  sync_dir "$spark_jars" "$stage/spark-jars"
  touch "$stage/spark-jars/.complete"      # scripts/spark.sh's mark of a finished download
  wheels serving "$root/requirements/serving.txt"
  # The jobs image has the server's packages already; its own wheelhouse holds only spark.txt's own pins.
  grep -vE '^\s*(#|-r|$)' "$root/requirements/spark.txt" >"$stage/spark-requirements.txt"
  wheels spark "$stage/spark-requirements.txt" --no-deps
}

sync_dir() {   # sync_dir FROM TO: TO holds FROM's files (hard links where the filesystem allows)
  local from=$1 to=$2
  rm -rf "$to.new" && mkdir -p "$to.new"
  cp -al "$(readlink -f "$from")/." "$to.new/" 2>/dev/null || cp -a "$(readlink -f "$from")/." "$to.new/"
  rm -rf "$to" && mv "$to.new" "$to"
}

wheels() {   # wheels NAME REQUIREMENTS [PIP ARGS]: the wheels of REQUIREMENTS in .containers/wheels/NAME (pinned)
  local name=$1 requirements=$2; shift 2
  local dir=$stage/wheels/$name stamp python
  stamp=$(sha256sum "$requirements" | cut -d' ' -f1)
  [[ -f $dir/.stamp && $(cat "$dir/.stamp") == "$stamp" ]] && return 0
  python=$root/.venv/bin/python; [[ -x $python ]] || python=python3
  say "wheels for $(basename "$requirements") into ${dir#"$root"/} (pip, the host's index)…"
  rm -rf "$dir" && mkdir -p "$dir"
  "$python" -m pip wheel -q --disable-pip-version-check -r "$requirements" -w "$dir" "$@"
  echo "$stamp" >"$dir/.stamp"
}

build() {
  local e base started=$SECONDS
  e=$(engine); base=$(base_image)
  stage_files
  local images=(
    "banner-bandit Containerfile app"
    "banner-bandit-jobs Containerfile jobs"
    "banner-bandit-cassandra containers/cassandra/Containerfile -"
    "banner-bandit-proxy containers/proxy/Containerfile -"
  )
  local spec name file target args
  for spec in "${images[@]}"; do
    read -r name file target <<<"$spec"
    args=(build -q -f "$root/$file" --build-arg "BASE_IMAGE=$base" -t "localhost/$name:$tag")
    [[ $target != - ]] && args+=(--target "$target")
    [[ $e == podman ]] && args+=(--format docker)     # OCI images have no HEALTHCHECK
    say "building localhost/$name:$tag from $file on $base…"
    local t=$SECONDS
    "$e" "${args[@]}" "$root" >/dev/null
    say "  built in $((SECONDS - t))s"
  done
  say "images built in $((SECONDS - started))s"
}

# -- up / down -----------------------------------------------------------------------------------------------------

up() {
  [[ ${BB_SKIP_BUILD:-} == 1 ]] || build
  local port=${BB_PORT:-8080}
  say "starting the ring: cassandra-1, -2, -3 one after another (project $project)…"
  compose up -d --no-build cassandra-1 cassandra-2 cassandra-3 >/dev/null
  # The schema step to its end before any replica starts: a replica would otherwise answer on a half-made schema.
  # (compose's depends_on conditions would say so, but podman-compose 1.0 ignores them: the order is kept here.)
  say "schema step (waits for the last node, then flask init-db)…"
  compose run --rm --no-deps -T schema
  say "starting app-1, app-2 and the proxy on 127.0.0.1:$port…"
  compose up -d --no-build --no-deps app-1 app-2 proxy >/dev/null
  local waited=0 timeout=${BB_UP_TIMEOUT:-300} url="http://127.0.0.1:$port/readyz"
  until python3 -c "import sys, urllib.request; sys.exit(urllib.request.urlopen('$url', timeout=5).status != 200)" 2>/dev/null; do
    (( waited >= timeout )) && { say "$url did not answer 200 within ${timeout}s"; compose ps >&2 || true; exit 1; }
    sleep 2; waited=$((waited + 2))
    (( waited % 30 == 0 )) && say "waiting for a replica to be ready ($url)… ${waited}s"
  done
  say "serving on http://127.0.0.1:$port/ (the admin token: ADMIN_API_TOKEN, in .run/env unless set)"
}

down() {
  local args=(down -t 60)
  [[ ${BB_DOWN_VOLUMES:-} == 1 ]] && args+=(-v)
  compose "${args[@]}" >/dev/null 2>&1 || compose "${args[@]}"
  # podman-compose 1.0 leaves the project's network behind.
  if [[ $(engine) == podman ]] && podman network exists "${project}_default" 2>/dev/null; then
    podman network rm -f "${project}_default" >/dev/null || true
  fi
  say "project $project down${BB_DOWN_VOLUMES:+ (volumes removed)}"
}

case "${1:-}" in
  setup) setup ;;
  base-image) base_image ;;
  build) build ;;
  up) up ;;
  down) down ;;
  job) shift; [[ $# -ge 1 ]] || { say "usage: $0 job priors|audit [ARGS…]"; exit 2; }
       # --no-deps: podman-compose 1.0 would otherwise `up` (and try to build) every service first.
       compose run --rm --no-deps -T "$@" ;;
  compose) shift; compose "$@" ;;
  *) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
