#!/usr/bin/env bash
# Starts a Spark standalone cluster on this machine: one master and N workers, each its own JVM,
# from the venv's pyspark (pip's pyspark has no sbin/start-master.sh, so the daemons are launched
# with $SPARK_HOME/bin/spark-class). PID files and logs go to the run dir. Waits until all N
# workers are registered with the master, then prints the master URL (also in RUN_DIR/master-url).
#
#   deploy/standalone/start-cluster.sh [N]        # N workers, default 2 (0: the master only)
#   deploy/standalone/stop-cluster.sh             # stops them again
#
# Settings (environment; the SPARK_* names are the ones Spark's own scripts use):
#   BIGEARTH_SPARK_RUN_DIR   pid files, logs, worker dirs       (deploy/standalone/run)
#   BIGEARTH_VENV            venv with pyspark + Delta jars      (<repo>/.venv)
#   SPARK_MASTER_HOST        bind address of all daemons         (127.0.0.1)
#   SPARK_MASTER_PORT        master RPC port                     (7077)
#   SPARK_MASTER_WEBUI_PORT  master web UI / JSON port           (8080)
#   SPARK_WORKER_WEBUI_PORT  web UI port of worker 1; worker i uses +i-1; 0 = random (8081)
#   SPARK_WORKER_CORES       cores per worker                    (1)
#   SPARK_WORKER_MEMORY      memory per worker for executors     (2g)
#   START_TIMEOUT            seconds to wait for registration    (120)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
N=${1:-2}
[[ $N =~ ^[0-9]+$ ]] || { echo "usage: $0 [N workers, 0 = the master only]" >&2; exit 2; }

VENV=${BIGEARTH_VENV:-$ROOT/.venv}
RUN_DIR=${BIGEARTH_SPARK_RUN_DIR:-$HERE/run}
HOST=${SPARK_MASTER_HOST:-127.0.0.1}
MASTER_PORT=${SPARK_MASTER_PORT:-7077}
WEBUI_PORT=${SPARK_MASTER_WEBUI_PORT:-8080}
WORKER_WEBUI_PORT=${SPARK_WORKER_WEBUI_PORT:-8081}
WORKER_CORES=${SPARK_WORKER_CORES:-1}
WORKER_MEMORY=${SPARK_WORKER_MEMORY:-2g}
START_TIMEOUT=${START_TIMEOUT:-120}
PY=$VENV/bin/python

[[ -x $PY ]] || { echo "no venv python at $PY (run: make setup)" >&2; exit 1; }
SPARK_HOME=$("$PY" -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))')
export SPARK_HOME
# Daemons, executors and their Python workers bind to HOST and run the venv's interpreter.
export SPARK_LOCAL_IP=$HOST PYSPARK_PYTHON=$PY
# A taken port is an error, not a silent move to the next one (the printed URL must be right).
export SPARK_DAEMON_JAVA_OPTS="-Dspark.port.maxRetries=0 ${SPARK_DAEMON_JAVA_OPTS:-}"
# Spark's Worker reads these; the command-line flags below are the single source.
unset SPARK_WORKER_PORT SPARK_WORKER_DIR SPARK_WORKER_INSTANCES

mkdir -p "$RUN_DIR"
RUN_DIR=$(cd "$RUN_DIR" && pwd)

# A PID file whose process is (still) a Spark master or worker, not a recycled pid.
alive() {
  local cmd
  [[ -f $1 ]] && cmd=$(ps -p "$(cat "$1")" -o command= 2>/dev/null) \
    && [[ $cmd == *org.apache.spark.deploy.* ]]
}
for pidfile in "$RUN_DIR"/*.pid; do
  if alive "$pidfile"; then
    echo "a cluster is already running from $RUN_DIR ($(basename "$pidfile")); stop it first:" \
      "BIGEARTH_SPARK_RUN_DIR=$RUN_DIR $HERE/stop-cluster.sh" >&2
    exit 1
  fi
done
rm -f "$RUN_DIR"/*.pid "$RUN_DIR/master-url"

port_taken() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }
ports=("$MASTER_PORT" "$WEBUI_PORT")
if [[ $WORKER_WEBUI_PORT != 0 ]]; then
  for ((i = 0; i < N; i++)); do ports+=($((WORKER_WEBUI_PORT + i))); done
fi
for p in "${ports[@]}"; do
  if port_taken "$p"; then echo "port $HOST:$p is in use; choose other ports" >&2; exit 1; fi
done

# launch NAME CLASS ARGS...: one daemon JVM in the background, pid in RUN_DIR/NAME.pid
launch() {
  local name=$1
  shift
  nohup "$SPARK_HOME/bin/spark-class" "$@" >"$RUN_DIR/$name.log" 2>&1 </dev/null &
  echo $! >"$RUN_DIR/$name.pid"  # spark-class execs java: this is the JVM's pid
}

MASTER_URL=spark://$HOST:$MASTER_PORT
launch master org.apache.spark.deploy.master.Master \
  --host "$HOST" --port "$MASTER_PORT" --webui-port "$WEBUI_PORT"
for ((i = 1; i <= N; i++)); do
  port=0
  [[ $WORKER_WEBUI_PORT == 0 ]] || port=$((WORKER_WEBUI_PORT + i - 1))
  mkdir -p "$RUN_DIR/work-$i"
  launch "worker-$i" org.apache.spark.deploy.worker.Worker \
    --host "$HOST" --cores "$WORKER_CORES" --memory "$WORKER_MEMORY" \
    --webui-port "$port" --work-dir "$RUN_DIR/work-$i" "$MASTER_URL"
done

# Wait for the master's JSON to list N ALIVE workers; fail early if a daemon died.
JSON_URL=http://$HOST:$WEBUI_PORT/json/
deadline=$((SECONDS + START_TIMEOUT))
while :; do
  for pidfile in "$RUN_DIR"/*.pid; do
    if ! alive "$pidfile"; then
      name=$(basename "$pidfile" .pid)
      echo "$name exited during start; last lines of $RUN_DIR/$name.log:" >&2
      tail -n 20 "$RUN_DIR/$name.log" >&2 || true
      BIGEARTH_SPARK_RUN_DIR=$RUN_DIR "$HERE/stop-cluster.sh" >&2
      exit 1
    fi
  done
  alive_workers=$("$PY" - "$JSON_URL" <<'PY' 2>/dev/null || echo -1
import json, sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=5) as r:
    state = json.load(r)
print(sum(w.get("state") == "ALIVE" for w in state.get("workers", [])))
PY
)  # -1: the master does not answer yet
  [[ $alive_workers -ge $N ]] && break
  if ((SECONDS >= deadline)); then
    if ((alive_workers < 0)); then
      echo "the master did not answer at $JSON_URL within ${START_TIMEOUT}s" >&2
    else
      echo "$alive_workers of $N workers registered within ${START_TIMEOUT}s" >&2
    fi
    echo "logs in $RUN_DIR" >&2
    BIGEARTH_SPARK_RUN_DIR=$RUN_DIR "$HERE/stop-cluster.sh" >&2
    exit 1
  fi
  sleep 1
done
echo "$MASTER_URL" >"$RUN_DIR/master-url"
echo "master web UI: http://$HOST:$WEBUI_PORT  ($N workers x $WORKER_CORES cores, $WORKER_MEMORY)" >&2
echo "$MASTER_URL"
