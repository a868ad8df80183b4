#!/bin/sh
# A throwaway redis-server for the C, C++, Go and Python test suites and the benchmarks (the Rust
# tests start their own: core/tests/common/redis_server.rs).
#
#   test-server.sh start DIR OWNER_PID [redis-server options...]   prints the port
#   test-server.sh start-tls DIR OWNER_PID [options...]            prints the port and the TLS port
#   test-server.sh stop DIR
#
# start runs Debian's redis-server on a free loopback port with its files in DIR (no snapshots,
# no append-only file unless the options say so), waits until it answers PING, and records its
# pid and port in DIR. A watchdog kills the server within a second once OWNER_PID (the test
# runner) is gone, however it ended, so nothing a test run starts outlives it; stop kills the
# server (and the watchdog) by pid and waits until it is gone. start-tls also makes a CA and
# certificates in DIR/certs (test-certs.sh: ca.crt, client.crt, client.key, other-ca.crt) and
# takes TLS connections on a second free port (add --tls-auth-clients yes to require client
# certificates); the plain port stays open for readiness and stop.
set -eu
cmd=${1:?usage: server.sh start|start-tls DIR OWNER_PID [options] | stop DIR}
dir=${2:?usage: server.sh start|start-tls DIR OWNER_PID [options] | stop DIR}

# Whether process $1 runs (a zombie does not: the server's parent, the shell that started it,
# is gone, and whoever inherited it may reap it late).
alive() {
    s=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
    [ -n "$s" ] && [ "${s#Z}" = "$s" ]
}

stop() {
    # The watchdog first (it only sleeps), then the server: asked to shut down without saving,
    # which it does at once (SIGTERM takes it a second or two); killed if it is not gone in 2 s.
    if [ -f "$dir/watchdog.pid" ]; then
        kill -9 "$(cat "$dir/watchdog.pid")" 2>/dev/null || true
        rm -f "$dir/watchdog.pid"
    fi
    [ -f "$dir/redis.pid" ] || return 0
    pid=$(cat "$dir/redis.pid")
    if [ -f "$dir/port" ]; then
        redis-cli -p "$(cat "$dir/port")" shutdown nosave >/dev/null 2>&1 || kill "$pid" 2>/dev/null || true
    else
        kill "$pid" 2>/dev/null || true
    fi
    i=0
    while alive "$pid" && [ $i -lt 40 ]; do sleep 0.05; i=$((i + 1)); done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$dir/redis.pid" "$dir/port"
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

case $cmd in
start | start-tls)
    owner=${3:?usage: server.sh start DIR OWNER_PID [options]}
    shift 3
    command -v redis-server >/dev/null || { echo "server.sh: redis-server is not installed (apt-get install redis-server)" >&2; exit 1; }
    mkdir -p "$dir"
    tls_port=""
    if [ "$cmd" = start-tls ]; then
        sh "$(dirname "$0")/test-certs.sh" "$dir/certs"
        tls_port=$(free_port)
        set -- --tls-port "$tls_port" --tls-cert-file "$dir/certs/server.crt" --tls-key-file "$dir/certs/server.key" \
            --tls-ca-cert-file "$dir/certs/ca.crt" --tls-auth-clients no "$@"
    fi
    for attempt in 1 2 3 4 5; do
        # A port the kernel just found free; another process may take it first, hence the retries.
        port=$(free_port)
        redis-server --port "$port" --bind 127.0.0.1 --dir "$dir" --save '' --appendonly no \
            --logfile "$dir/redis.log" --daemonize no "$@" </dev/null >/dev/null 2>&1 &
        echo $! >"$dir/redis.pid"
        i=0
        while [ $i -lt 100 ]; do
            if [ "$(redis-cli -p "$port" ping 2>/dev/null)" = PONG ]; then
                echo "$port" >"$dir/port"
                pid=$(cat "$dir/redis.pid")
                (
                    while alive "$owner" && alive "$pid"; do sleep 1; done
                    kill -9 "$pid" 2>/dev/null
                ) </dev/null >/dev/null 2>&1 &
                echo $! >"$dir/watchdog.pid"
                echo "$port${tls_port:+ $tls_port}"
                exit 0
            fi
            alive "$(cat "$dir/redis.pid")" || break # it died: port taken?
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
