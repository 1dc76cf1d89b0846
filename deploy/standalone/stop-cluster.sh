#!/usr/bin/env bash
# Stops the standalone cluster started by start-cluster.sh from the same run dir: workers first,
# then the master (SIGTERM, then SIGKILL after STOP_TIMEOUT seconds). Idempotent: missing or
# stale PID files are fine. Only processes whose command line is a Spark daemon are signalled.
#   BIGEARTH_SPARK_RUN_DIR   run dir of start-cluster.sh (deploy/standalone/run)
#   STOP_TIMEOUT             seconds to wait for each daemon (20)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
RUN_DIR=${BIGEARTH_SPARK_RUN_DIR:-$HERE/run}
STOP_TIMEOUT=${STOP_TIMEOUT:-20}
[[ -d $RUN_DIR ]] || { echo "no cluster run dir at $RUN_DIR; nothing to stop"; exit 0; }

is_daemon() {
  local cmd
  cmd=$(ps -p "$1" -o command= 2>/dev/null) && [[ $cmd == *org.apache.spark.deploy.* ]]
}

stop() {
  local pidfile=$1 name pid
  name=$(basename "$pidfile" .pid)
  pid=$(cat "$pidfile" 2>/dev/null || true)
  if [[ -n $pid ]] && is_daemon "$pid"; then
    kill -TERM "$pid" 2>/dev/null || true
    for ((t = 0; t < STOP_TIMEOUT * 5; t++)); do
      is_daemon "$pid" || break
      sleep 0.2
    done
    if is_daemon "$pid"; then
      echo "$name (pid $pid) ignored SIGTERM; killing it"
      kill -KILL "$pid" 2>/dev/null || true
    fi
    echo "stopped $name (pid $pid)"
  fi
  rm -f "$pidfile"
}

shopt -s nullglob
for pidfile in "$RUN_DIR"/worker-*.pid; do stop "$pidfile"; done
[[ -f $RUN_DIR/master.pid ]] && stop "$RUN_DIR/master.pid"
rm -f "$RUN_DIR/master-url"
exit 0
