#!/usr/bin/env bash
# Measures oakmeet's media node and LiveKit v1.9.11 side by side, in one
# sitting on one machine, on the same synthetic load, and prints the ratio
# table of server CPU per forwarded packet. Absolute figures differ by 2.5x
# between two virtual machines of the same kind: only ratios from one sitting
# mean anything, so the two systems take turns (LiveKit run, oakmeet run,
# LiveKit run, ...) rather than one after the other.
#
# The load, the same for both: P publishers, one VP8 track each at 30 fps of
# 6,250-byte synthetic frames (180 RTP packets/s, 1.52 Mbit/s per track, a
# key frame every 60 frames and on PLI), no audio; S receive-only
# subscribers. Every publisher also receives every other publisher: oakmeet's
# participants always do, and LiveKit's harness does with -pubs-subscribe,
# so both servers forward P x (S + P - 1) tracks and "1x50" means the same
# packets on both. Media are not end-to-end encrypted in oakmeet's runs
# (--e2ee=false); its node forwards opaque payloads either way.
#
# Measured, in a WINDOW-second window after 5 s of settling (LiveKit's
# harness: from every receiver having every track; oakmeet bench: from the
# last join): the CPU time (utime+stime, /proc/PID/stat) of the one process
# that forwards (livekit-server; oakmeet's `node`, run as its own process
# apart from the control plane) in microseconds per packet the receivers got;
# delivery, frames and packets received over those sent times receivers
# (oakmeet bench counts the packets of the frames sent in the window, the
# harness those arriving in it); the process's RSS at the end of the window.
# The definitions are those of the LiveKit load harness's README
# (livekit-bench, kept outside this repository with no LiveKit code in it;
# issue 17 says where).
#
# Each run happens in a private network namespace (unshare -n), where both
# servers listen on fixed loopback ports: nothing collides with a test suite
# or another server on this machine, and no packet leaves it. That needs root
# (or unprivileged user namespaces, tried with unshare -rn).
#
#   LIVEKIT_SERVER=/path/to/server LIVEKIT_BENCH=/path/to/livekitbench scripts/bench-vs-livekit.sh
#   scripts/bench-vs-livekit.sh --quick     # 1x10, one run each, 10 s: a smoke test
#   SCENARIOS="5x25" RUNS=5 WINDOW=20 scripts/bench-vs-livekit.sh
#
# Environment: LIVEKIT_SERVER (the livekit-server v1.9.11 binary),
# LIVEKIT_BENCH (the harness binary), SCENARIOS (default "1x50 5x25 10x10"),
# RUNS (3), WINDOW (seconds, 30), DATA (work directory, default a new temporary
# one), OUT (default $DATA/results.jsonl: one JSON line per run, tagged with
# system, scenario and run). A full sitting (3 scenarios x 3 runs x 2 systems)
# takes about 20 minutes; run it on a quiet machine.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
}

# inner_livekit and inner_oakmeet run inside the network namespace: the
# script starts itself again there with one of these as its first argument.
# Both take P S TAG, read DATA, BIN, WINDOW, LIVEKIT_* from the environment
# and leave the run's result in $DATA/TAG/result.json.
inner_pids=()
inner_cleanup() {
  trap - INT TERM EXIT
  local pid
  for pid in "${inner_pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  # livekit-server waits for its participants to leave on the first TERM
  # and gives up waiting on the second. Whatever still runs after that is
  # killed: a process left behind would keep the namespace and use the CPU
  # the next run measures.
  stop_within 3 || {
    for pid in "${inner_pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    stop_within 5
  } || for pid in "${inner_pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}

# stop_within SECONDS: whether every process of the run ends by then.
stop_within() {
  local deadline=$((SECONDS + $1)) pid
  for pid in "${inner_pids[@]}"; do
    while kill -0 "$pid" 2>/dev/null; do
      [ "$SECONDS" -lt "$deadline" ] || return 1
      sleep 0.1
    done
  done
}

inner_traps() {
  trap 'inner_cleanup; exit 130' INT
  trap 'inner_cleanup; exit 143' TERM
  trap inner_cleanup EXIT
}

# wait_for CMD...: runs CMD every 0.1 s until it succeeds, for at most 30 s.
wait_for() {
  local i
  for i in $(seq 300); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  return 1
}

# run_waiting CMD...: runs CMD in the background and waits for it, so that
# a TERM from the outer script runs the cleanup at once.
run_waiting() {
  "$@" &
  local pid=$!
  inner_pids+=("$pid")
  local rc=0
  wait "$pid" || rc=$?
  return "$rc"
}

netns_up() {
  ip link set lo up
  # No IPv6 candidates: both servers are told to use 127.0.0.1 only.
  sysctl -qw net.ipv6.conf.all.disable_ipv6=1 2>/dev/null || true
}

tcp_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

inner_livekit() {
  local p=$1 s=$2 tag=$3 dir="$DATA/$3"
  inner_traps
  netns_up
  # pion, under the LiveKit SDK, never gathers host candidates on a loopback
  # interface and the SDK does not expose its settings: the clients get one
  # address on a veth inside this namespace (no route leaves it). The kernel
  # delivers their packets to the server's 127.0.0.1 over lo.
  ip link add v0 type veth peer name v1
  ip addr add 10.250.0.1/32 dev v0
  ip link set v0 up
  ip link set v1 up
  "$LIVEKIT_SERVER" --dev --config "$DATA/livekit.yaml" --bind 127.0.0.1 >"$dir/server.log" 2>&1 &
  local srv=$!
  inner_pids+=("$srv")
  if ! wait_for tcp_open 127.0.0.1 7880; then
    echo "livekit-server did not listen on 127.0.0.1:7880 within 30 s (see $dir/server.log)" >&2
    return 1
  fi
  run_waiting "$LIVEKIT_BENCH" -publishers "$p" -subscribers "$s" -pubs-subscribe \
    -fps 30 -frame-bytes 6250 -keyframe-every 60 -duration "${WINDOW}s" -warmup 5s \
    -server-pid "$srv" -room "bench-$tag" -json "$dir/result.json" \
    >"$dir/harness.out" 2>"$dir/harness.err"
  # The harness writes no JSON when it measured nothing.
  [ -s "$dir/result.json" ] || { echo "the harness wrote no result (see $dir/harness.err)" >&2; return 1; }
}

inner_oakmeet() {
  local p=$1 s=$2 tag=$3 dir="$DATA/$3"
  inner_traps
  netns_up
  local port=8080 nats=4222 nodeport=8180
  # The control plane without media nodes of its own, and one node process
  # beside it: the node's CPU is then the forwarding's alone. Limits off:
  # every client joins from 127.0.0.1, faster than a public deployment lets
  # one address.
  "$BIN" serve --nodes 0 --listen "127.0.0.1:$port" --nats-listen "127.0.0.1:$nats" \
    --trust-client-location --limits off --data "$dir/control" >"$dir/control.log" 2>&1 &
  inner_pids+=($!)
  if ! wait_for curl -fsS "http://127.0.0.1:$port/healthz"; then
    echo "the control plane was not healthy within 30 s (see $dir/control.log)" >&2
    return 1
  fi
  "$BIN" enroll --data "$dir/control" --id de-bench --country DE --region eu-central-1 \
    --out "$dir/enroll" >/dev/null
  "$BIN" node --enrollment "$dir/enroll" --nats "nats://127.0.0.1:$nats" \
    --listen "127.0.0.1:$nodeport" --loopback --max-participants 0 --turn-port 0 \
    --drain-timeout 1s >"$dir/node.log" 2>&1 &
  local node=$!
  inner_pids+=("$node")
  if ! wait_for node_healthy "$port"; then
    echo "the media node did not report healthy within 30 s (see $dir/node.log)" >&2
    return 1
  fi
  run_waiting "$BIN" bench --server "http://127.0.0.1:$port" --publishers "$p" --subscribers "$s" \
    --settle 5s --duration "${WINDOW}s" --video-frame-bytes 6250 --fps 30 --audio=false --e2ee=false \
    --node-pid "$node" --json >"$dir/result.json" 2>"$dir/bench.err"
}

node_healthy() {
  local nodes
  nodes=$(curl -fsS "http://127.0.0.1:$1/api/nodes") && grep -q '"healthy": *true' <<<"$nodes"
}

case "${1:-}" in
  __inner-livekit) shift; inner_livekit "$@"; exit ;;
  __inner-oakmeet) shift; inner_oakmeet "$@"; exit ;;
esac

QUICK=""
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=yes; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "usage: $0 [--quick]   (see $0 --help)" >&2; exit 2 ;;
  esac
done
if [ -n "$QUICK" ]; then
  SCENARIOS=${SCENARIOS:-1x10} RUNS=${RUNS:-1} WINDOW=${WINDOW:-10}
fi
SCENARIOS=${SCENARIOS:-1x50 5x25 10x10}
SCENARIOS=$(echo $SCENARIOS) # one space between scenarios
RUNS=${RUNS:-3}
WINDOW=${WINDOW:-30}
for sc in $SCENARIOS; do
  [[ $sc =~ ^[1-9][0-9]*x[0-9]+$ ]] || { echo "scenario $sc: want PUBLISHERSxSUBSCRIBERS, e.g. 5x25" >&2; exit 2; }
done
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || { echo "RUNS=$RUNS: want a positive number" >&2; exit 2; }
[[ $WINDOW =~ ^[1-9][0-9]*$ ]] || { echo "WINDOW=$WINDOW: want whole seconds" >&2; exit 2; }

for tool in jq curl ip unshare; do
  command -v "$tool" >/dev/null || { echo "$tool is needed" >&2; exit 2; }
done
if [ -z "${LIVEKIT_SERVER:-}" ] || [ ! -x "$LIVEKIT_SERVER" ] || [ -z "${LIVEKIT_BENCH:-}" ] || [ ! -x "$LIVEKIT_BENCH" ]; then
  cat >&2 <<'MSG'
LIVEKIT_SERVER and LIVEKIT_BENCH must name the LiveKit server v1.9.11 and the load harness.
Neither is part of this repository; build them outside it (about 2 minutes on 2 cores):

  GOBIN=$SCRATCH go install github.com/livekit/livekit-server/cmd/server@v1.9.11
  cd livekit-bench && go build -o $SCRATCH/livekitbench .   # the load harness (see issue 17)
  export LIVEKIT_SERVER=$SCRATCH/server LIVEKIT_BENCH=$SCRATCH/livekitbench
MSG
  exit 2
fi
LIVEKIT_VERSION=$("$LIVEKIT_SERVER" --version 2>&1 | awk '{print $NF}')
[ "$LIVEKIT_VERSION" = 1.9.11 ] ||
  echo "warning: $LIVEKIT_SERVER is version $LIVEKIT_VERSION; the published comparison is with 1.9.11" >&2
harness_help=$("$LIVEKIT_BENCH" -h 2>&1 || true)
grep -q -- '-pubs-subscribe' <<<"$harness_help" ||
  { echo "$LIVEKIT_BENCH has no -pubs-subscribe: build the current harness" >&2; exit 2; }

UNSHARE=(unshare -n)
[ "$(id -u)" -eq 0 ] || UNSHARE=(unshare -r -n)
"${UNSHARE[@]}" true 2>/dev/null ||
  { echo "cannot make a network namespace with ${UNSHARE[*]}: run as root" >&2; exit 2; }

DATA=${DATA:-$(mktemp -d -t oakmeet-vs-livekit.XXXXXX)}
mkdir -p "$DATA"
OUT=${OUT:-$DATA/results.jsonl}
BIN="$DATA/oakmeet"
export DATA BIN WINDOW LIVEKIT_SERVER LIVEKIT_BENCH

echo "building oakmeet into $BIN"
go build -o "$BIN" ./cmd/oakmeet
missing=""
bench_help=$("$BIN" bench --help 2>&1 || true)
for f in video-frame-bytes fps audio e2ee node-pid; do
  grep -q -- "-$f\b" <<<"$bench_help" || missing="$missing --$f"
done
if [ -n "$missing" ]; then
  echo "this oakmeet's bench lacks$missing: it cannot send the load LiveKit is measured with (issue 17, build item 1)" >&2
  exit 2
fi
# Lines of this sitting carry its id: $OUT may hold earlier sittings too.
SITTING="$(date -u +%Y%m%dT%H%M%SZ)-$$"
if COMMIT=$(git rev-parse --short HEAD 2>/dev/null); then
  git diff --quiet HEAD -- || COMMIT="$COMMIT-dirty"
else
  COMMIT=unknown
fi

# The harness README's configuration: dev keys, info logging (--dev alone
# logs at debug, which costs CPU), only 127.0.0.1 offered, STUN pointed at
# a port where nothing listens instead of Google's, no TURN.
cat >"$DATA/livekit.yaml" <<'YAML'
port: 7880
bind_addresses: ["127.0.0.1"]
rtc:
  tcp_port: 7881
  udp_port: 7882
  use_external_ip: false
  node_ip: 127.0.0.1
  enable_loopback_candidate: true
  stun_servers: ["127.0.0.1:3478"]
  interfaces:
    includes: ["lo"]
keys:
  devkey: secret
logging:
  level: info
turn:
  enabled: false
YAML

inner=""
cleanup() {
  trap - INT TERM
  if [ -n "$inner" ]; then
    echo; echo "stopping the run in progress"
    kill -TERM "$inner" 2>/dev/null || true
    wait "$inner" 2>/dev/null || true
  fi
}
trap 'cleanup; exit 130' INT
trap 'cleanup; exit 143' TERM

# record SYSTEM SCENARIO RUN TAG RC: appends the run's line to $OUT, its
# figures under common names (the raw result kept under "result").
record() {
  local sys=$1 sc=$2 run=$3 tag=$4 rc=$5 res="$DATA/$4/result.json" norm
  if [ "$sys" = livekit ]; then
    norm='{us_per_pkt: .ServerUsPerPkt, server_cores: .ServerCores, fwd_pkts_per_s: .FwdPktsPerS,
           delivery_frames: .DeliveryFrames, delivery_pkts: .DeliveryPkts, rss_mb: .ServerRSSMB}'
  else
    norm='{us_per_pkt: .node_us_per_forwarded_packet, server_cores: .node_cpu_cores,
           fwd_pkts_per_s: .forwarded_packets_per_s, delivery_frames: .delivery_ratio,
           delivery_pkts: .packet_delivery_ratio, rss_mb: .node_rss_mb}'
  fi
  local tags
  tags=$(jq -nc --arg sitting "$SITTING" --arg sys "$sys" --arg sc "$sc" --argjson run "$run" --arg tag "$tag" \
    --arg commit "$COMMIT" --arg lk "$LIVEKIT_VERSION" --argjson window "$WINDOW" \
    '{sitting: $sitting, system: $sys, scenario: $sc, run: $run, tag: $tag, window_s: $window,
      version: (if $sys == "livekit" then $lk else $commit end),
      date: (now | todate)}')
  local why="run failed with status $rc"
  if [ "$rc" -eq 0 ]; then
    # A run without a CPU figure measured nothing (the server's process
    # not found, no packet forwarded).
    jq -e "$norm | .us_per_pkt | numbers" "$res" >/dev/null 2>&1 && why="" ||
      why="no CPU per forwarded packet in $res"
  fi
  if [ -z "$why" ]; then
    jq -c --argjson tags "$tags" "\$tags + ($norm) + {result: .}" "$res" >>"$OUT"
  else
    jq -c --arg why "$why" '. + {error: $why}' <<<"$tags" >>"$OUT"
    failed=$((failed + 1))
  fi
}

# fx(d): a number with d decimals (jq 1.6 has no printf), "–" for none.
JQ_FMT='def fx(d): if type != "number" then "–" else ((. * pow(10; d)) | round) as $n
  | ($n | fabs | tostring) as $s
  | (if ($s | length) <= d then ("0" * (d + 1 - ($s | length))) + $s else $s end) as $p
  | (if $n < 0 then "-" else "" end) + $p[0:($p | length) - d] + (if d > 0 then "." + $p[($p | length) - d:] else "" end) end;'

failed=0
total=$(( $(wc -w <<<"$SCENARIOS") * RUNS * 2 ))
n=0
echo "$total runs of ${WINDOW} s, results in $OUT, logs under $DATA"
for sc in $SCENARIOS; do
  p=${sc%x*} s=${sc#*x}
  for run in $(seq "$RUNS"); do
    for sys in livekit oakmeet; do
      n=$((n + 1))
      tag="$sys-$sc-$run"
      # A DATA of an earlier sitting holds this tag's files: the harness
      # would append to its result and serve would start on its state.
      rm -rf "${DATA:?}/$tag"
      mkdir -p "$DATA/$tag"
      echo "[$n/$total] $(date -u +%H:%M:%S) $sys $sc run $run"
      rc=0
      "${UNSHARE[@]}" "$0" "__inner-$sys" "$p" "$s" "$tag" &
      inner=$!
      wait "$inner" || rc=$?
      inner=""
      [ "$rc" -eq 0 ] || echo "  $sys $sc run $run failed (status $rc); logs in $DATA/$tag" >&2
      record "$sys" "$sc" "$run" "$tag" "$rc"
      jq -r --arg sitting "$SITTING" --arg tag "$tag" "$JQ_FMT"'
        select(.sitting == $sitting and .tag == $tag)
        | if .error then "  " + .error
          else "  \(.us_per_pkt | fx(2)) µs/pkt, \(.fwd_pkts_per_s | fx(0)) pkt/s, delivery \(.delivery_frames | fx(4)) of frames, \(.delivery_pkts | fx(4)) of packets, RSS \(.rss_mb | fx(0)) MB"
          end' "$OUT"
    done
  done
done

cpu_model=$(sed -n '/^model name/{s/^[^:]*: *//p;q}' /proc/cpuinfo)
[ -n "$cpu_model" ] || cpu_model=$(lscpu 2>/dev/null | sed -n '/^Model name/{s/^[^:]*: *//p;q}' || true)

# The table: per scenario, the median of each system's µs per forwarded
# packet over its runs (and their range), the ratio of the medians, the
# lowest delivery of any run, the RSS range, and the forwarded packets/s
# (the same load on both: a mismatch means one did not forward it all).
jq -rs --arg scenarios "$SCENARIOS" --arg sitting "$SITTING" --arg date "$(date -u '+%Y-%m-%d %H:%M UTC')" \
  --arg arch "$(uname -m)" --arg cpu "$cpu_model" \
  --arg nproc "$(nproc)" --arg commit "$COMMIT" --arg lk "$LIVEKIT_VERSION" --arg runs "$RUNS" \
  --arg window "$WINDOW" "$JQ_FMT"'
  def median: sort | if length == 0 then null elif length % 2 == 1 then .[length / 2 | floor]
    else (.[length / 2 - 1] + .[length / 2]) / 2 end;
  def span(d): if length == 0 then "–" elif min == max then min | fx(d)
    else "\(min | fx(d))–\(max | fx(d))" end;
  def vals(f): map(f | numbers);
  def delivery: "\(vals(.delivery_frames) | min | fx(4)) / \(vals(.delivery_pkts) | min | fx(4))";
  [.[] | select(.sitting == $sitting)] as $all
  | def of($sys; $sc): [$all[] | select(.system == $sys and .scenario == $sc and (.error | not))];
    def failures($sc): [$all[] | select(.scenario == $sc and .error)] | length;
  "## oakmeet / LiveKit \($lk): media-server CPU per forwarded packet",
  "",
  "\($date); \($arch), \($cpu), \($nproc) cores; oakmeet commit \($commit); runs each: \($runs), alternating; \($window) s windows.",
  "",
  "| pub × sub | LiveKit µs/pkt, median (range) | oakmeet µs/pkt, median (range) | **oakmeet / LiveKit** | LiveKit delivery, min (frames / packets) | oakmeet delivery, min (frames / packets) | LiveKit RSS MB | oakmeet RSS MB | forwarded pkt/s, median: LiveKit / oakmeet | failed runs |",
  "|---|---|---|---|---|---|---|---|---|---|",
  ($scenarios | split(" ")[] as $sc
   | of("livekit"; $sc) as $l | of("oakmeet"; $sc) as $o
   | ($l | vals(.us_per_pkt) | median) as $lm | ($o | vals(.us_per_pkt) | median) as $om
   | "| \($sc) | \($lm | fx(1)) (\($l | vals(.us_per_pkt) | span(1))) | \($om | fx(1)) (\($o | vals(.us_per_pkt) | span(1))) | **\(if $lm and $om and $lm > 0 then $om / $lm | fx(2) else "–" end)** | \($l | delivery) | \($o | delivery) | \($l | vals(.rss_mb) | span(0)) | \($o | vals(.rss_mb) | span(0)) | \($l | vals(.fwd_pkts_per_s) | median | fx(0)) / \($o | vals(.fwd_pkts_per_s) | median | fx(0)) | \(failures($sc)) |")
' "$OUT" | tee "$DATA/table.md"
echo
echo "table in $DATA/table.md, every run in $OUT"
[ "$failed" -eq 0 ] || { echo "$failed of $total runs failed" >&2; exit 1; }
