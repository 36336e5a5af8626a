#!/usr/bin/env bash
# Soaks the real system under churn for a while: the control plane and
# eight `oakmeet node` processes in four countries, six meetings, up to
# fifteen bots, with join bursts, nodes killed and restarted, drains,
# hosts' policy moves and bots leaving, round after round. It fails on any
# frame that fails integrity, and prints the totals and the timeline.
#
#   scripts/soak.sh          # ten minutes
#   scripts/soak.sh 3m
#   TIMEOUT=5h scripts/soak.sh 4h
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${1:-10m}
# go test stops a test after its -timeout (10m by default): give the soak
# longer than it churns; every step of it has its own deadline.
TIMEOUT=${TIMEOUT:-2h}
OAKMEET_SOAK=$DURATION exec go test -race -count=1 -timeout "$TIMEOUT" -run TestSoak -v ./system
