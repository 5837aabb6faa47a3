# shellcheck shell=bash
# bench/lib/pp_part3_counts.sh: part 3 of bench/proxy_protocol.sh, the
# cost per connection counted rather than timed: syscalls (perf) of the
# running instances, then instructions (callgrind) of each instance run
# again as one process.  Entry point: count_per_connection.
#
# Expects from the caller: COUNT_CONNECTIONS, HTTPD, PROXY_VERSION, WORK,
# VARIANTS, LABEL, FRONT_PORT, APACHE_PID, PIDS and forget_pid,
# ON_APACHE_CPUS, ON_CLIENT_CPUS, die; running servers (pp_servers.sh,
# for run_user).  Leaves the Apache instances stopped.

# Replaces the running instance V by one under callgrind (same
# configuration and port, one process), sends COUNT_CONNECTIONS
# requests through the balancer, and prints the instructions per connection.
callgrind_instance() {
    local v=$1 dir=$WORK/httpd-$1 out=$WORK/callgrind.httpd.$1
    local pid ab_out

    kill "${APACHE_PID[$v]}"
    wait "${APACHE_PID[$v]}" 2>/dev/null || true
    forget_pid "${APACHE_PID[$v]}"
    # Callgrind writes its file at exit, after Apache has switched user.
    : >"$out"
    chmod 666 "$out"
    [ "$(id -u)" != 0 ] || chown "$(run_user)" "$out"
    "${ON_APACHE_CPUS[@]}" valgrind -q --tool=callgrind --vgdb=no \
        --toggle-collect=ap_run_pre_connection \
        --toggle-collect=ap_run_process_connection \
        --callgrind-out-file="$out" \
        "$HTTPD" -X -f "$dir/httpd.conf" 2>"$dir/valgrind.log" &
    pid=$!
    PIDS="$PIDS $pid"
    # Ready when one request succeeds: that connection is counted too (a
    # probe that fails never reached Apache: the balancer's connect was refused).
    for _ in $(seq 100); do
        [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 60 \
            "http://127.0.0.1:${FRONT_PORT[$v]}/index.html")" = 200 ] && break
        kill -0 "$pid" 2>/dev/null || die "callgrind run of $v died"
        sleep 0.3
    done
    ab_out=$WORK/ab.$v
    "${ON_CLIENT_CPUS[@]}" ab -n "$COUNT_CONNECTIONS" -c 4 \
        "http://127.0.0.1:${FRONT_PORT[$v]}/index.html" >"$ab_out" 2>&1 \
        || true
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    forget_pid "$pid"
    if ! grep -q "^Complete requests: *$COUNT_CONNECTIONS\$" "$ab_out" \
        || ! grep -q "^Failed requests: *0\$" "$ab_out" \
        || grep -q "^Non-2xx" "$ab_out"; then
        echo "ERRORS in the callgrind run of ${LABEL[$v]}, see $ab_out" >&2
        echo -
        return
    fi
    awk -v n="$((COUNT_CONNECTIONS + 1))" \
        '/^totals:/ { printf "%.0f\n", $2 / n }' "$out"
}

# Syscalls per connection of the running instance V (every thread of every
# process), counted by perf while ab sends COUNT_CONNECTIONS requests
# through the balancer; "-" where perf cannot count them (not installed, or not
# allowed: tracepoints need root or kernel.perf_event_paranoid <= -1).
count_syscalls() {
    local v=$1 out=$WORK/perf.$1 pids perf_pid n
    if ! command -v perf >/dev/null; then
        echo -
        return
    fi
    pids=$(echo "${APACHE_PID[$v]}" $(pgrep -P "${APACHE_PID[$v]}") | tr ' ' ,)
    perf stat -x, -e raw_syscalls:sys_enter -p "$pids" -o "$out" \
        2>/dev/null &
    perf_pid=$!
    sleep 0.5
    "${ON_CLIENT_CPUS[@]}" ab -n "$COUNT_CONNECTIONS" -c 4 \
        "http://127.0.0.1:${FRONT_PORT[$v]}/index.html" >/dev/null 2>&1 \
        || true
    kill -INT "$perf_pid" 2>/dev/null || true
    wait "$perf_pid" 2>/dev/null || true
    n=$(awk -F, '$3 ~ /raw_syscalls/ && $1 ~ /^[0-9]+$/ { print $1 }' \
        "$out" 2>/dev/null)
    if [ -n "$n" ]; then
        awk -v s="$n" -v n="$COUNT_CONNECTIONS" \
            'BEGIN { printf "%.1f\n", s / n }'
    else
        echo -
    fi
}

# difference X Y DECIMALS -> "+D (+P%)", how much more X is than Y
difference() {
    awk -v x="$1" -v y="$2" -v d="$3" 'BEGIN {
        if (x == "-" || y == "-" || y == 0) print "-";
        else printf "%+." d "f (%+.1f%%)\n", x - y, 100 * (x - y) / y }'
}

count_per_connection() {
    local v
    declare -A ir=() sys=()
    echo
    echo "== Apache cost per connection: instructions (callgrind, user space," \
        "inside the"
    echo "   pre_connection and process_connection hooks) and syscalls" \
        "(perf, all"
    echo "   threads); ab: $COUNT_CONNECTIONS requests, one per" \
        "connection, via $BALANCER, PROXY v$PROXY_VERSION =="
    if ! command -v valgrind >/dev/null || ! command -v ab >/dev/null; then
        echo "(needs valgrind and ab, from apache2-utils: skipped)"
        return
    fi
    for v in $VARIANTS; do
        sys[$v]=$(count_syscalls "$v")
        ir[$v]=$(callgrind_instance "$v")
    done
    printf '  %-24s %18s %20s\n' variant "Ir/connection" "syscalls/connection"
    for v in $VARIANTS; do
        printf '  %-24s %18s %20s\n' "${LABEL[$v]}" "${ir[$v]}" "${sys[$v]}"
    done
    printf '  %-24s %18s %20s\n' "(c) - (a)" \
        "$(difference "${ir[c]}" "${ir[a]}" 0)" \
        "$(difference "${sys[c]}" "${sys[a]}" 1)"
    printf '  %-24s %18s %20s\n' "(c) - (b)" \
        "$(difference "${ir[c]}" "${ir[b]}" 0)" \
        "$(difference "${sys[c]}" "${sys[b]}" 1)"
}
