#!/usr/bin/env bash
# A three-node Cassandra ring and a Spark standalone cluster on this one machine, for trying the service, its jobs
# and its failure handling as they run on a real cluster.
#
#   scripts/cluster.sh start         start the ring (nodes 1, 2, 3 one after another, each waits to join)
#   scripts/cluster.sh stop          stop the ring
#   scripts/cluster.sh status        the ring as its first node sees it (nodetool status)
#   scripts/cluster.sh node N start|stop|kill   one node (kill: SIGKILL, as a crash)
#   scripts/cluster.sh env           the variables that point the app, jobs and benchmarks at the ring
#   scripts/cluster.sh spark-start   a Spark master and one worker (one core)
#   scripts/cluster.sh spark-stop    stop them
#   scripts/cluster.sh spark-status  exit 0 when the master answers
#   scripts/cluster.sh submit JOB ARGS…   spark-submit spark_jobs/JOB.py to the Spark cluster, against the ring
#
# Node N listens on 127.0.0.N with the native (CQL) port RING_PORT (9142), the storage port 7100 and the JMX port
# 7200+N: none of them collides with the project's single node (127.0.0.1:9042, 7000, 7199), which keeps running
# beside the ring. Every node runs scripts/cassandra.sh with its own CASSANDRA_HOME (.cassandra-ring/nodeN: conf,
# data, logs) and the single node's downloaded jars. Heaps: RING_HEAP (512M) each; one token per node, spread
# evenly over the Murmur3 range. RING_START_TIMEOUT (300 s) bounds each node's start.
# The Spark master listens on 127.0.0.1:SPARK_MASTER_PORT (7177) and its web UI on 8180, the worker's on 8181;
# pids and logs are under .spark/cluster.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
ring_home=${RING_HOME:-$root/.cassandra-ring}
ring_port=${RING_PORT:-9142}
storage_port=${RING_STORAGE_PORT:-7100}
heap=${RING_HEAP:-512M}
lib=${CASSANDRA_LIB:-$root/.cassandra/lib}
nodes=(1 2 3)
# One token each, a third of the Murmur3 range (-2^63 … 2^63-1) apart.
tokens=(-9223372036854775808 -3074457345618258603 3074457345618258602)
spark_home=$root/.spark/cluster
spark_port=${SPARK_MASTER_PORT:-7177}
master_url=spark://127.0.0.1:$spark_port
python=${PYSPARK_PYTHON:-$root/.venv/bin/python}

say() { printf '[cluster] %s\n' "$*" >&2; }

hosts() { local n; for n in "${nodes[@]}"; do printf '127.0.0.%s\n' "$n"; done | paste -sd,; }

node_env() {   # node_env N: the environment of scripts/cassandra.sh for node N, one NAME=value a line
  local n=$1
  printf '%s\n' CASSANDRA_HOME="$ring_home/node$n" CASSANDRA_LIB="$lib" CASSANDRA_LISTEN="127.0.0.$n" \
    CASSANDRA_PORT="$ring_port" CASSANDRA_STORAGE_PORT="$storage_port" CASSANDRA_JMX_PORT="$((7200 + n))" \
    CASSANDRA_SEEDS="127.0.0.1:$storage_port" CASSANDRA_INITIAL_TOKEN="${tokens[$((n - 1))]}" \
    CASSANDRA_CLUSTER_NAME=banner-bandit-ring CASSANDRA_HEAP="$heap" CASSANDRA_CPUS=1 \
    CASSANDRA_START_TIMEOUT="${RING_START_TIMEOUT:-300}" \
    CASSANDRA_JVM_OPTS="-Dcassandra.ring_delay_ms=5000"   # a fresh, empty ring: no 30 s waits to join
}

node_cmd() {   # node_cmd N start|stop|kill
  local n=$1 command=$2 pid
  if [[ $command == kill ]]; then
    pid=$(node_pid "$n") || { say "node $n is not running"; return 0; }
    say "node $n: SIGKILL (pid $pid)"
    kill -KILL "$pid"
    return 0
  fi
  local vars
  mapfile -t vars < <(node_env "$n")
  env "${vars[@]}" "$here/cassandra.sh" "$command"
}

nodetool() {   # nodetool N ARGS…: NodeTool (in the server's jars) over node N's JMX
  local n=$1; shift
  mkdir -p "$ring_home"
  [[ -f $ring_home/logback-tools.xml ]] || cat >"$ring_home/logback-tools.xml" <<'XML'
<configuration><root level="ERROR"/></configuration>
XML
  # The JDK 17 module flags NodeTool needs (a subset of the server's); user.home: its history file goes there.
  java --add-exports java.base/jdk.internal.misc=ALL-UNNAMED --add-exports java.base/jdk.internal.ref=ALL-UNNAMED \
    --add-exports java.base/sun.nio.ch=ALL-UNNAMED --add-opens java.base/jdk.internal.ref=ALL-UNNAMED \
    --add-opens java.base/sun.nio.ch=ALL-UNNAMED --add-opens java.base/java.nio=ALL-UNNAMED \
    --add-exports java.rmi/sun.rmi.registry=ALL-UNNAMED --add-exports java.rmi/sun.rmi.server=ALL-UNNAMED \
    -Duser.home="$ring_home" -Dcassandra.logdir="$ring_home" \
    -Dlogback.configurationFile="file://$ring_home/logback-tools.xml" \
    -cp "$lib/*" org.apache.cassandra.tools.NodeTool -h 127.0.0.1 -p "$((7200 + n))" "$@" 2>/dev/null
}

up_nodes() { nodetool "$1" status | grep -c '^UN' || true; }

wait_joined() {   # wait_joined N: node 1 sees N nodes up and normal
  local want=$1 waited=0
  until [[ $(up_nodes 1) -ge $want ]]; do
    (( waited >= ${RING_START_TIMEOUT:-300} )) && { say "the ring did not show $want nodes up"; return 1; }
    sleep 2; waited=$((waited + 2))
    (( waited % 10 == 0 )) && say "waiting for $want nodes up and normal… ${waited}s"
  done
}

node_pid() { local f=$ring_home/node$1/cassandra.pid; [[ -f $f ]] && kill -0 "$(cat "$f")" 2>/dev/null && cat "$f"; }

start() {
  [[ -d $lib ]] || "$here/cassandra.sh" fetch
  local n started=$SECONDS
  for n in "${nodes[@]}"; do
    say "node $n: 127.0.0.$n:$ring_port"
    node_cmd "$n" start
    wait_joined "$n"
  done
  say "ring of ${#nodes[@]} nodes up after $((SECONDS - started))s"
  status
  say "point the app, the jobs and the benchmarks at it with:"
  env_lines | sed 's/^/    export /' >&2
}

stop() {
  local n
  for n in "${nodes[@]}"; do
    [[ -d $ring_home/node$n ]] && node_cmd "$n" stop
  done
  return 0
}

status() {
  local n
  for n in "${nodes[@]}"; do
    if node_pid "$n" >/dev/null; then
      nodetool "$n" status && return 0
    fi
  done
  say "no node of the ring is running"
  return 1
}

env_lines() {
  echo "CASSANDRA_HOSTS=$(hosts)"
  echo "CASSANDRA_PORT=$ring_port"
  echo "CASSANDRA_REPLICATION=3"
  echo "CASSANDRA_CONSISTENCY=LOCAL_QUORUM"
}

spark_pid() { local f=$spark_home/$1.pid; [[ -f $f ]] && kill -0 "$(cat "$f")" 2>/dev/null && cat "$f"; }

spark_up() { (exec 3<>"/dev/tcp/127.0.0.1/$spark_port") 2>/dev/null; }

spark_class() {   # spark_class NAME CLASS ARGS…: a daemon of the installed PySpark, its pid and log in spark_home
  local name=$1; shift
  local spark_dir
  spark_dir=$("$python" -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))')
  mkdir -p "$spark_home/$name-work"
  SPARK_HOME=$spark_dir SPARK_LOCAL_IP=127.0.0.1 SPARK_LOG_DIR=$spark_home PYSPARK_PYTHON=$python \
    SPARK_WORKER_DIR=$spark_home/$name-work \
    setsid "$spark_dir/bin/spark-class" "$@" >"$spark_home/$name.log" 2>&1 </dev/null &
  echo $! >"$spark_home/$name.pid"
}

spark_start() {
  mkdir -p "$spark_home"
  if spark_pid master >/dev/null && spark_up; then
    say "Spark master already running at $master_url"
  else
    say "starting the Spark master at $master_url (web UI http://127.0.0.1:8180)…"
    spark_class master org.apache.spark.deploy.master.Master --host 127.0.0.1 --port "$spark_port" \
      --webui-port 8180
    local waited=0
    until spark_up; do
      spark_pid master >/dev/null || { say "the master exited:"; tail -n 20 "$spark_home/master.log" >&2; exit 1; }
      (( waited >= 120 )) && { say "the master did not answer in 120s; see $spark_home/master.log"; exit 1; }
      sleep 1; waited=$((waited + 1))
    done
  fi
  if spark_pid worker >/dev/null; then
    say "Spark worker already running"
  else
    say "starting a Spark worker (1 core, ${SPARK_WORKER_MEMORY:-1g})…"
    spark_class worker org.apache.spark.deploy.worker.Worker --host 127.0.0.1 --cores 1 \
      --memory "${SPARK_WORKER_MEMORY:-1g}" --webui-port 8181 "$master_url"
  fi
  local waited=0
  until grep -q "Successfully registered with master" "$spark_home/worker.log" 2>/dev/null; do
    spark_pid worker >/dev/null || { say "the worker exited:"; tail -n 20 "$spark_home/worker.log" >&2; exit 1; }
    (( waited >= 120 )) && { say "the worker did not register in 120s; see $spark_home/worker.log"; exit 1; }
    sleep 1; waited=$((waited + 1))
  done
  say "Spark cluster ready: $master_url (logs in $spark_home); submit with: scripts/cluster.sh submit city_priors"
}

spark_stop() {
  local name pid
  for name in worker master; do
    if pid=$(spark_pid "$name"); then
      say "stopping the Spark $name (pid $pid)"
      kill -TERM "$pid"
      for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
      kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
    fi
    rm -f "$spark_home/$name.pid"
  done
}

submit() {   # submit JOB ARGS…: the job's main() on the Spark cluster; CASSANDRA_* from the environment
  local job=$1; shift
  local spark_dir
  spark_dir=$("$python" -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))')
  # PYTHONPATH: the job script's own directory comes first on sys.path, not this checkout; the checkout's packages
  # must win over any other install of the project in the virtualenv.
  SPARK_HOME=$spark_dir SPARK_LOCAL_IP=127.0.0.1 PYSPARK_PYTHON=$python PYSPARK_DRIVER_PYTHON=$python \
    PYTHONPATH=$root${PYTHONPATH:+:$PYTHONPATH} \
    "$spark_dir/bin/spark-submit" --master "$master_url" --jars "$("$here/spark.sh" jars)" \
      --driver-memory "${SPARK_DRIVER_MEMORY:-768m}" --executor-memory "${SPARK_EXECUTOR_MEMORY:-768m}" \
      --conf spark.driver.host=127.0.0.1 --conf spark.ui.enabled=false \
      "$root/spark_jobs/$job.py" "$@"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  env) env_lines ;;
  node) node_cmd "${2:?node number}" "${3:?start|stop}" ;;
  spark-start) spark_start ;;
  spark-stop) spark_stop ;;
  spark-status) spark_up && say "Spark master answers at $master_url" ;;
  submit) shift; submit "$@" ;;
  *) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
