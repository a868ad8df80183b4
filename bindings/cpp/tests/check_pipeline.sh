#!/bin/sh
# Runs a build of examples/cpp/pipeline.cpp ($1) and checks the facts it must print whatever
# order its threads run in: the same facts as the C demo's (examples/c/examples.mk). The
# output goes to $1.out.
set -eu
bin=$1
out=$bin.out
"$bin" > "$out" 2>&1 || { cat "$out" >&2; echo "example: $bin exited with $?" >&2; exit 1; }

missing=0
while IFS= read -r fact; do
    [ -n "$fact" ] || continue
    if ! grep -q -- "^$fact" "$out"; then
        echo "example: $out lacks the line: $fact" >&2
        missing=1
    fi
done <<'FACTS'
invoiced 6 of 6 orders
listener: FAILED order-3 (delivery [0-9]*, attempt 1): inventory service timed out (simulated), requeued=true
order-3: transform attempts=2 audited=yes committed=yes
fan-out: order-1 went to transform as delivery [0-9]* and to audit as delivery [0-9]*, both with parent id order-1
listener saw 55 events: published=12 dispatched=19 processed=18 failed=1
stats: published=12 unrouted=0 dispatched=19 processed=18 failed=0 requeued=1 dropped=0 in_flight=0
stats: topics=2 subscriptions=3 listeners=1 workers=4 listener_events_dropped=0
jobs: 8 waiting, retained until the first worker
jobs: 8 of 8 done by 2 competing workers ([0-9] + [0-9]); each took its jobs highest priority first: yes
close: ok (0 deliveries left, 0 retained messages discarded)
listener released after [0-9]* events
pipeline done
FACTS
commits=$(grep -c '^committer: committed invoice-' "$out" || true)
if [ "$commits" != 6 ]; then
    echo "example: $out shows $commits commits, not 6" >&2
    missing=1
fi
if [ "$missing" != 0 ]; then
    cat "$out" >&2
    exit 1
fi
echo "example: $bin printed every expected fact"
