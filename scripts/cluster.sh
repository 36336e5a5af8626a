#!/usr/bin/env bash
# Starts a local six-node oakmeet cluster, shaped like a real multi-region
# deployment: one control plane with NATS reachable by other processes, and
# six separate `oakmeet node` processes, each labelled in its own country.
# Everything listens on 127.0.0.1. Ctrl-C stops it all (nodes drain first).
#
#   scripts/cluster.sh            # control plane on http://127.0.0.1:8080
#   PORT=9090 NATS_PORT=4333 scripts/cluster.sh
set -euo pipefail
cd "$(dirname "$0")/.."

PORT=${PORT:-8080}
NATS_PORT=${NATS_PORT:-4222}
DATA=${DATA:-$(mktemp -d -t oakmeet-cluster.XXXXXX)}
BIN="$DATA/oakmeet"

echo "building oakmeet into $BIN"
go build -o "$BIN" ./cmd/oakmeet

pids=()
cleanup() {
  trap - INT TERM EXIT
  echo; echo "stopping the cluster"
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup INT TERM EXIT

"$BIN" serve --nodes 0 --listen "127.0.0.1:$PORT" --nats-listen "127.0.0.1:$NATS_PORT" \
  --trust-client-location --data "$DATA/control" >"$DATA/control.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
  curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break
  sleep 0.1
done

i=0
for spec in DE:eu-central-1 FR:eu-west-3 JP:ap-northeast-1 US:us-east-1 BR:sa-east-1 CN:cn-north-1; do
  cc=${spec%%:*}; region=${spec#*:}; i=$((i + 1))
  id="$(echo "$cc" | tr A-Z a-z)-$i"
  # Each node gets its own NATS identity, allowed its own subjects only.
  "$BIN" enroll --data "$DATA/control" --id "$id" --country "$cc" --region "$region" \
    --out "$DATA/enroll-$id" >/dev/null
  "$BIN" node --enrollment "$DATA/enroll-$id" \
    --nats "nats://127.0.0.1:$NATS_PORT" --listen "127.0.0.1:$((PORT + 100 + i))" --loopback \
    --turn-port "$((PORT + 200 + i))" --drain-timeout 10s >"$DATA/node-$cc.log" 2>&1 &
  pids+=($!)
done

for _ in $(seq 100); do
  n=$(curl -fsS "http://127.0.0.1:$PORT/api/nodes" 2>/dev/null | grep -c '"healthy": true' || true)
  [ "$n" -ge 6 ] && break
  sleep 0.2
done

cat <<MSG
oakmeet cluster running: control plane http://127.0.0.1:$PORT, NATS nats://127.0.0.1:$NATS_PORT
nodes: DE FR JP US BR CN (logs and data in $DATA)

  curl -s http://127.0.0.1:$PORT/api/nodes
  $BIN meeting create --server http://127.0.0.1:$PORT --host-key $DATA/host.key   # prints the links
  $BIN bot --link 'JOIN_URL' --country JP --duration 30s
  $BIN report --server http://127.0.0.1:$PORT --meeting ID --operator-token-file $DATA/control/operator.token

Press Ctrl-C to stop.
MSG
wait "${pids[0]}"
