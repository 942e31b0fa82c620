#!/usr/bin/env bash
# A Cassandra node in a container: scripts/cassandra.sh run, configured by the environment.
#
#   CASSANDRA_LISTEN        its address for clients and other nodes (default: the container's own, hostname -i)
#   CASSANDRA_SEEDS         seed nodes, comma-separated host[:storage port] (default: itself — a ring of one)
#   CASSANDRA_HEAP          heap (-Xms = -Xmx), e.g. 512M (default 1G)
#   CASSANDRA_CLUSTER_NAME  the ring's name (all nodes alike)
#   CASSANDRA_INITIAL_TOKEN this node's token (one token per node; default: a random one)
#   CASSANDRA_START_AFTER   host:port that must accept connections before this node starts (a ring joins one
#                           node at a time: compose starts node 2 after node 1's CQL port answers)
#   CASSANDRA_CPUS, CASSANDRA_JVM_OPTS, CASSANDRA_PORT, CASSANDRA_STORAGE_PORT: as in scripts/cassandra.sh
set -euo pipefail

if [[ -z ${CASSANDRA_LISTEN:-} ]]; then
  CASSANDRA_LISTEN=$(hostname -i | cut -d' ' -f1)
  export CASSANDRA_LISTEN
fi

if [[ -n ${CASSANDRA_START_AFTER:-} ]]; then
  IFS=, read -r -a waits <<<"$CASSANDRA_START_AFTER"
  for target in "${waits[@]}"; do
    host=${target%:*} port=${target##*:}
    waited=0
    until (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; do
      (( waited % 15 == 0 )) && echo "[cassandra] waiting for $host:$port before starting… ${waited}s" >&2
      sleep 1
      waited=$((waited + 1))
    done
  done
fi

# Seeds by address: Cassandra looks a seed's name up once, and a slow answer of the runtime's DNS then stopped the
# start with "The seed provider lists no seeds". Each name is looked up here until it resolves.
if [[ -n ${CASSANDRA_SEEDS:-} ]]; then
  IFS=, read -r -a seeds <<<"$CASSANDRA_SEEDS"
  resolved=()
  for seed in "${seeds[@]}"; do
    name=${seed%%:*} port=${seed#"$name"}
    waited=0
    until address=$(getent ahostsv4 "$name" | awk 'NR == 1 {print $1}') && [[ -n $address ]]; do
      (( waited % 15 == 0 )) && echo "[cassandra] waiting for the seed $name to resolve… ${waited}s" >&2
      sleep 1
      waited=$((waited + 1))
    done
    resolved+=("$address$port")
  done
  CASSANDRA_SEEDS=$(IFS=,; echo "${resolved[*]}")
  export CASSANDRA_SEEDS
fi

exec /opt/cassandra/bin/cassandra.sh run
