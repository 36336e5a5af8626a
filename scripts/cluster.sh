#!/usr/bin/env bash
# Starts a local six-node oakmeet cluster, shaped like a real multi-region
# deployment: one control plane with NATS reachable by other processes, and
# six separate `oakmeet node` processes, each labelled in its own country.
# Everything listens on 127.0.0.1. Ctrl-C stops it all (nodes drain first).
#
# With --replicas N the control plane is N `oakmeet serve` processes, each
# embedding one member of an N-server NATS cluster (JetStream replicas N)
# on one deployment's secrets (`oakmeet replica init`); the nodes are given
# every member's NATS URL. Replica i serves HTTP on PORT+i-1, NATS on
# NATS_PORT+i-1 and routes on ROUTE_PORT+i-1.
#
#   scripts/cluster.sh            # control plane on http://127.0.0.1:8080
#   scripts/cluster.sh --replicas 3
#   PORT=9090 NATS_PORT=4333 scripts/cluster.sh
set -euo pipefail
cd "$(dirname "$0")/.."

REPLICAS=1
while [ $# -gt 0 ]; do
  case "$1" in
    --replicas) REPLICAS=${2:?--replicas needs a number}; shift 2 ;;
    --replicas=*) REPLICAS=${1#*=}; shift ;;
    *) echo "usage: $0 [--replicas N]" >&2; exit 2 ;;
  esac
done
case "$REPLICAS" in
  [1-5]) ;;
  *) echo "--replicas $REPLICAS: want 1 to 5" >&2; exit 2 ;;
esac

PORT=${PORT:-8080}
NATS_PORT=${NATS_PORT:-4222}
ROUTE_PORT=${ROUTE_PORT:-6222}
DATA=${DATA:-$(mktemp -d -t oakmeet-cluster.XXXXXX)}
BIN="$DATA/oakmeet"

echo "building oakmeet into $BIN"
go build -o "$BIN" ./cmd/oakmeet

pids=()
serve_pids=()
cleanup() {
  trap - INT TERM EXIT
  echo; echo "stopping the cluster"
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup INT TERM EXIT

nats_urls="nats://127.0.0.1:$NATS_PORT"
if [ "$REPLICAS" -eq 1 ]; then
  "$BIN" serve --nodes 0 --listen "127.0.0.1:$PORT" --nats-listen "127.0.0.1:$NATS_PORT" \
    --trust-client-location --data "$DATA/control" >"$DATA/control.log" 2>&1 &
  pids+=($!)
  serve_pids=($!)
else
  routes=""; nats_urls=""
  for r in $(seq "$REPLICAS"); do
    routes="${routes:+$routes,}nats-route://127.0.0.1:$((ROUTE_PORT + r - 1))"
    nats_urls="${nats_urls:+$nats_urls,}nats://127.0.0.1:$((NATS_PORT + r - 1))"
  done
  # Replica ids, where serve knows them, name each replica's lease.
  replica_flag=""
  "$BIN" serve --help 2>&1 | grep -q -- '-replica-id' && replica_flag=yes
  # Every replica holds the same keys, control key and operator token,
  # made before any serve starts: one starting would make its own at the
  # same moment.
  for r in $(seq 2 "$REPLICAS"); do
    "$BIN" replica init --data "$DATA/control-$r" --from "$DATA/control" >/dev/null
  done
  for r in $(seq "$REPLICAS"); do
    dir="$DATA/control"; [ "$r" -gt 1 ] && dir="$DATA/control-$r"
    "$BIN" serve --nodes 0 --listen "127.0.0.1:$((PORT + r - 1))" --nats-listen "127.0.0.1:$((NATS_PORT + r - 1))" \
      --nats-cluster oakmeet --nats-cluster-listen "127.0.0.1:$((ROUTE_PORT + r - 1))" --nats-routes "$routes" \
      --nats-server-name "r$r" ${replica_flag:+--replica-id "r$r"} \
      --trust-client-location --data "$dir" >"$DATA/control-$r.log" 2>&1 &
    pids+=($!)
    serve_pids+=($!)
  done
fi
replicas_note=""
[ "$REPLICAS" -gt 1 ] && replicas_note=" (replicas on ports $PORT-$((PORT + REPLICAS - 1)))"
for r in $(seq "$REPLICAS"); do
  # A cluster's JetStream needs a quorum of members before any serve is up.
  for _ in $(seq 600); do
    curl -fsS "http://127.0.0.1:$((PORT + r - 1))/healthz" >/dev/null 2>&1 && break
    sleep 0.1
  done
done

i=0
for spec in DE:eu-central-1 FR:eu-west-3 JP:ap-northeast-1 US:us-east-1 BR:sa-east-1 CN:cn-north-1; do
  cc=${spec%%:*}; region=${spec#*:}; i=$((i + 1))
  id="$(echo "$cc" | tr A-Z a-z)-$i"
  # Each node gets its own NATS identity, allowed its own subjects only.
  "$BIN" enroll --data "$DATA/control" --id "$id" --country "$cc" --region "$region" \
    --out "$DATA/enroll-$id" >/dev/null
  "$BIN" node --enrollment "$DATA/enroll-$id" \
    --nats "$nats_urls" --listen "127.0.0.1:$((PORT + 100 + i))" --loopback \
    --turn-port "$((PORT + 200 + i))" --drain-timeout 10s >"$DATA/node-$cc.log" 2>&1 &
  pids+=($!)
done

for _ in $(seq 100); do
  n=$(curl -fsS "http://127.0.0.1:$PORT/api/nodes" 2>/dev/null | grep -c '"healthy": true' || true)
  [ "$n" -ge 6 ] && break
  sleep 0.2
done

cat <<MSG
oakmeet cluster running: control plane http://127.0.0.1:$PORT$replicas_note, NATS $nats_urls
nodes: DE FR JP US BR CN (logs and data in $DATA)

  curl -s http://127.0.0.1:$PORT/api/nodes
  $BIN meeting create --server http://127.0.0.1:$PORT --host-key $DATA/host.key   # prints the links
  $BIN bot --link 'JOIN_URL' --country JP --duration 30s
  $BIN report --server http://127.0.0.1:$PORT --meeting ID --operator-token-file $DATA/control/operator.token

Press Ctrl-C to stop.
MSG
# With replicas, the cluster runs on while any of them does: one may be
# killed to watch another take over.
wait "${serve_pids[@]}" || true # a replica killed on purpose is no error
