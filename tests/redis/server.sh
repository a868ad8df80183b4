#!/bin/sh
# A throwaway redis-server for the C, C++, Go and Python test suites and the benchmarks (the Rust
# tests start their own: tests/common/redis_server.rs).
#
#   server.sh start DIR OWNER_PID [redis-server options...]   prints the port
#   server.sh stop DIR
#
# start runs Debian's redis-server on a free loopback port with its files in DIR (no snapshots,
# no append-only file unless the options say so), waits until it answers PING, and records its
# pid and port in DIR. A watchdog kills the server within a second once OWNER_PID (the test
# runner) is gone, however it ended, so nothing a test run starts outlives it; stop kills the
# server (and the watchdog) by pid and waits until it is gone.
set -eu
cmd=${1:?usage: server.sh start DIR OWNER_PID [options] | stop DIR}
dir=${2:?usage: server.sh start DIR OWNER_PID [options] | stop DIR}

stop() {
    for f in watchdog.pid redis.pid; do
        [ -f "$dir/$f" ] || continue
        pid=$(cat "$dir/$f")
        kill "$pid" 2>/dev/null || true
        # Until it is gone (2 s), then for good.
        i=0
        while kill -0 "$pid" 2>/dev/null && [ $i -lt 20 ]; do sleep 0.1; i=$((i + 1)); done
        kill -9 "$pid" 2>/dev/null || true
        rm -f "$dir/$f"
    done
}

case $cmd in
start)
    owner=${3:?usage: server.sh start DIR OWNER_PID [options]}
    shift 3
    command -v redis-server >/dev/null || { echo "server.sh: redis-server is not installed (apt-get install redis-server)" >&2; exit 1; }
    mkdir -p "$dir"
    for attempt in 1 2 3 4 5; do
        # A port the kernel just found free; another process may take it first, hence the retries.
        port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
        redis-server --port "$port" --bind 127.0.0.1 --dir "$dir" --save '' --appendonly no \
            --logfile "$dir/redis.log" --daemonize no "$@" </dev/null >/dev/null 2>&1 &
        echo $! >"$dir/redis.pid"
        i=0
        while [ $i -lt 100 ]; do
            if [ "$(redis-cli -p "$port" ping 2>/dev/null)" = PONG ]; then
                echo "$port" >"$dir/port"
                pid=$(cat "$dir/redis.pid")
                (
                    while kill -0 "$owner" 2>/dev/null && kill -0 "$pid" 2>/dev/null; do sleep 1; done
                    kill -9 "$pid" 2>/dev/null
                ) </dev/null >/dev/null 2>&1 &
                echo $! >"$dir/watchdog.pid"
                echo "$port"
                exit 0
            fi
            kill -0 "$(cat "$dir/redis.pid")" 2>/dev/null || break # it died: port taken?
            sleep 0.05
            i=$((i + 1))
        done
        stop
    done
    echo "server.sh: redis-server did not start; its log:" >&2
    tail -n 20 "$dir/redis.log" >&2 2>/dev/null || true
    exit 1
    ;;
stop)
    stop
    ;;
*)
    echo "server.sh: unknown command $cmd" >&2
    exit 2
    ;;
esac
