# shellcheck shell=bash
# bench/lib/pp_part4_perconn.sh: part 4 of bench/proxy_protocol.sh
# (PERCONN=1), Apache's CPU per connection of (a) and (c) in alternating
# rounds (per_connection_cpu), with 4b, the listener (or worker) threads
# by symbol (PERCONN_PERF, threads_profile), and 4c, the kernel's events
# in them (PERCONN_TRACE, threads_trace).  Also the senders
# that part 5 uses: perconn_ab (ab via the balancer, or pp_conn_client) and
# perconn_sender (their description).
#
# Expects from the caller: the PERCONN_* settings, DIRECT_SEGMENTS,
# DIRECT_HOLD_US, DIRECT_GAP_US,
# SAME_INSTANCE, PROXY_VERSION, BALANCER; WORK, LABEL, APACHE_PID,
# APACHE_PORT, FRONT_PORT, ON_CLIENT_CPUS, die; running servers and
# children_cpu_ns, error_log_counts (pp_servers.sh); median, quartiles,
# bootstrap_median (stats.sh).  Defines LISTENERS, WORKERS, TRACED and
# TRACE_EVENTS.

# pp_conn_client's option for V: what it writes, in how many segments
# (DIRECT_SEGMENTS).
direct_option() {   # direct_option V
    local header=1
    [ "$1" != a ] && [ "$SAME_INSTANCE" != aa ] || header=
    case $DIRECT_SEGMENTS,$header in
    one,1) echo --proxy ;;
    two,1|as-haproxy,1) echo --split ;;
    two,) echo --split-bare ;;
    esac
}

# N requests to V, one per connection, C at a time: ab through the balancer,
# or with PERCONN_SENDER=direct pp_conn_client straight to Apache (the
# PROXY header and the request in one write for (b) and (c), unless
# DIRECT_SEGMENTS says otherwise).  Prints nothing; fails unless every
# request got a 200.
perconn_ab() {   # perconn_ab V N C OUT
    if [ "$PERCONN_SENDER" = direct ]; then
        local opt=()
        # shellcheck disable=SC2207
        opt=($(direct_option "$1"))
        [ "$DIRECT_HOLD_US" = 0 ] || opt+=(--hold-us "$DIRECT_HOLD_US")
        [ "$DIRECT_GAP_US" = 0 ] || opt+=(--gap-us "$DIRECT_GAP_US")
        "${ON_CLIENT_CPUS[@]}" "$WORK/pp_conn_client" "${opt[@]}" \
            "${APACHE_PORT[$1]}" "$2" "$3" >"$4" 2>&1 || true
        grep -q "^$2 0 " "$4"
        return
    fi
    "${ON_CLIENT_CPUS[@]}" ab -n "$2" -c "$3" \
        "http://127.0.0.1:${FRONT_PORT[$1]}/index.html" >"$4" 2>&1 || true
    grep -q "^Complete requests: *$2\$" "$4" \
        && grep -q "^Failed requests: *0\$" "$4" \
        && ! grep -q "^Non-2xx" "$4"
}

# The sender of parts 4 and 5, for the headings.
perconn_sender() {
    local held=""
    [ "$DIRECT_HOLD_US" = 0 ] \
        || held=", held open $DIRECT_HOLD_US us after Apache's close"
    [ "$DIRECT_GAP_US" = 0 ] \
        || held="$held, $DIRECT_GAP_US us before the request"
    if [ "$PERCONN_SENDER" = direct ]; then
        case $DIRECT_SEGMENTS in
        one) echo "pp_conn_client straight to Apache, header and request" \
                "in one write$held" ;;
        two) echo "pp_conn_client straight to Apache, two segments to" \
                "either port$held" ;;
        as-haproxy) echo "pp_conn_client straight to Apache, the header" \
                "and the request in two segments, the request alone in" \
                "one$held" ;;
        esac
    else
        echo "ab via $BALANCER"
    fi
}

# The listener threads of V's children ("/proc/PID/task/TID" each): the
# thread of each child that waits in epoll_wait while the server is idle
# (the workers wait on a futex).  Looked for again for up to 2 s while a
# listener is still busy with the last connections.
declare -A LISTENERS=()
find_listeners() {   # find_listeners V
    local p t found try
    for try in $(seq 20); do
        LISTENERS[$1]=""
        for p in $(pgrep -P "${APACHE_PID[$1]}"); do
            found=0
            for t in /proc/"$p"/task/*; do
                if [ "$(cat "$t/wchan" 2>/dev/null)" = do_epoll_wait ]; then
                    LISTENERS[$1]="${LISTENERS[$1]} $t"
                    found=$((found + 1))
                fi
            done
            [ "$found" = 1 ] || continue 2
        done
        return 0
    done
    die "${LABEL[$1]}: no child with exactly one thread in epoll_wait" \
        "(the listener) after $try tries"
}

# The other threads of V's children (workers, and the few that sleep):
# sets WORKERS[V] like LISTENERS[V].  After find_listeners V.
declare -A WORKERS=()
find_workers() {   # find_workers V
    local p t
    WORKERS[$1]=""
    for p in $(pgrep -P "${APACHE_PID[$1]}"); do
        for t in /proc/"$p"/task/*; do
            case " ${LISTENERS[$1]} " in
            *" $t "*) ;;
            *) WORKERS[$1]="${WORKERS[$1]} $t" ;;
            esac
        done
    done
}

# The threads ("/proc/PID/task/TID" each) that 4b and 4c look at in V:
# the listeners, or with PERCONN_PERF or PERCONN_TRACE set to workers,
# the other threads (TRACED).
traced_threads() {   # traced_threads V
    if [ "$TRACED" = listeners ]; then
        echo "${LISTENERS[$1]}"
    else
        echo "${WORKERS[$1]}"
    fi
}

# Their thread ids, comma-separated, for perf -t.
traced_tids() {   # traced_tids V
    local t
    for t in $(traced_threads "$1"); do basename "$t"; done | paste -sd,
}

# CPU time so far of these threads ("/proc/PID/task/TID" each), in ns.
threads_cpu_ns() {   # threads_cpu_ns THREAD...
    local t
    for t in "$@"; do
        cat "$t/schedstat" 2>/dev/null || true
    done | awk '{ s += $1 } END { printf "%.0f\n", s }'
}

# CPU time so far of V's listener threads, in ns.
listener_cpu_ns() {
    # shellcheck disable=SC2086
    threads_cpu_ns ${LISTENERS[$1]}
}

# Times V's listener threads have gone to sleep so far (voluntary
# context switches: each is a wake-up to come).
listener_sleeps() {
    local t
    for t in ${LISTENERS[$1]}; do
        awk '$1 == "voluntary_ctxt_switches:" { print $2 }' "$t/status" \
            2>/dev/null || true
    done | awk '{ s += $1 } END { printf "%.0f\n", s }'
}

# Scheduler counts so far of every thread of V's children, from
# /proc/PID/task/TID/sched: "voluntary involuntary migrations" (a thread
# that slept, one that was preempted, one moved to another CPU).
children_sched() {   # children_sched V
    local p
    for p in $(pgrep -P "${APACHE_PID[$1]}"); do
        cat /proc/"$p"/task/*/sched 2>/dev/null || true
    done | awk '$1 == "nr_voluntary_switches" { v += $3 }
                $1 == "nr_involuntary_switches" { i += $3 }
                $1 == "se.nr_migrations" { m += $3 }
                END { printf "%.0f %.0f %.0f\n", v, i, m }'
}

# V's children's CPU once the last connections' work is done (no growth
# over 20 ms, at most 1 s): with SAME_INSTANCE the next run reads the same
# counters, and would be charged what this one left running.
settled_cpu_ns() {   # settled_cpu_ns V
    local now prev i
    now=$(children_cpu_ns "$1")
    for ((i = 0; i < 50; i++)); do
        sleep 0.02
        prev=$now
        now=$(children_cpu_ns "$1")
        [ "$now" != "$prev" ] || break
    done
    echo "$now"
}

# The balancer's CPU so far in ns (0 with the direct sender).
sender_cpu_ns() {
    if [ "$PERCONN_SENDER" = balancer ]; then balancer_cpu_ns; else echo 0; fi
}

# One run of V; appends "round variant us_per_connection
# listener_us_per_connection listener_wakeups_per_connection
# balancer_us_per_connection, and of every thread: wakeups, preemptions,
# migrations per connection" to $WORK/perconn.
perconn_run() {   # perconn_run V ROUND
    local v=$1 round=$2 out=$WORK/perconn.ab.$1.$2 c0 c1 w0 w1 r0 r1 l0 l1 \
        s0 s1 h0 h1 x0 x1
    read -r w0 r0 < <(error_log_counts "$v")
    x0=$(children_sched "$v")
    s0=$(listener_sleeps "$v")
    l0=$(listener_cpu_ns "$v")
    h0=$(sender_cpu_ns)
    c0=$(children_cpu_ns "$v")
    perconn_ab "$v" "$PERCONN_CONNECTIONS" "$PERCONN_CONCURRENCY" "$out" \
        || die "${LABEL[$v]}: errors in round $round, see $out"
    c1=$(settled_cpu_ns "$v")
    h1=$(sender_cpu_ns)
    l1=$(listener_cpu_ns "$v")
    s1=$(listener_sleeps "$v")
    x1=$(children_sched "$v")
    read -r w1 r1 < <(error_log_counts "$v")
    [ "$w1" = "$w0" ] && [ "$r1" = "$r0" ] \
        || die "${LABEL[$v]}: warnings or refused connections in round" \
            "$round, see $WORK/httpd-$v/error.log"
    awk -v r="$round" -v v="$v" -v c="$((c1 - c0))" -v l="$((l1 - l0))" \
        -v s="$((s1 - s0))" -v h="$((h1 - h0))" -v n="$PERCONN_CONNECTIONS" \
        -v x0="$x0" -v x1="$x1" \
        'BEGIN { split(x0, a); split(x1, b)
                 printf "%d %s %.3f %.3f %.3f %.3f %.3f %.3f %.3f\n", r, v,
                        c / 1000 / n, l / 1000 / n, s / n, h / 1000 / n,
                        (b[1] - a[1]) / n, (b[2] - a[2]) / n,
                        (b[3] - a[3]) / n }' >>"$WORK/perconn"
}

# strace -c -f attached to V's children while ab makes N connections:
# writes "syscall calls" lines to $WORK/strace.V.calls and prints the
# total per connection.
perconn_strace() {   # perconn_strace V
    local v=$1 out=$WORK/strace.$1 args=() pid spid
    for pid in $(pgrep -P "${APACHE_PID[$v]}"); do
        args+=(-p "$pid")
    done
    strace -c -f -o "$out" "${args[@]}" 2>"$out.log" &
    spid=$!
    sleep 1
    perconn_ab "$v" "$PERCONN_STRACE_CONNECTIONS" "$PERCONN_CONCURRENCY" \
        "$WORK/strace.ab.$v" \
        || die "${LABEL[$v]}: errors under strace, see $WORK/strace.ab.$v"
    kill -INT "$spid" 2>/dev/null || true
    wait "$spid" 2>/dev/null || true
    # strace -c's table: "% time seconds usecs/call calls [errors] syscall";
    # the errors column is empty for calls that never failed.
    awk '$1 ~ /^[0-9.]+$/ && $NF != "total" { print $NF, $4 }' "$out" \
        | sort >"$out.calls"
    awk -v n="$PERCONN_STRACE_CONNECTIONS" '{ s += $2 }
        END { printf "%.2f\n", s / n }' "$out.calls"
}

per_connection_cpu() {
    local round v s_a s_c pace col
    echo
    echo "== 4. Apache's CPU per connection, (a) and (c) interleaved:" \
        "$PERCONN_ROUNDS rounds of $PERCONN_CONNECTIONS connections each" \
        "($(perconn_sender), $PERCONN_CONCURRENCY at a time, PROXY v$PROXY_VERSION," \
        "$(balancer_settings))," \
        "CPU of the httpd children" \
        "only =="
    command -v ab >/dev/null || die "part 4 needs ab (apache2-utils)"
    if [ -n "$PERCONN_NICE" ]; then
        for v in a c; do
            # shellcheck disable=SC2046
            renice -n "$PERCONN_NICE" -p "${APACHE_PID[$v]}" \
                $(ps -L -o lwp= --ppid "${APACHE_PID[$v]}") >/dev/null \
                || die "PERCONN_NICE: renice failed"
        done
        echo "Apache's processes and threads at nice $PERCONN_NICE"
    fi
    echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
    : >"$WORK/perconn"
    find_listeners a
    find_listeners c
    # Warm-up, not counted.
    for v in a c; do
        perconn_ab "$v" "$PERCONN_CONNECTIONS" "$PERCONN_CONCURRENCY" \
            "$WORK/perconn.warmup.$v" \
            || die "${LABEL[$v]}: errors in the warm-up"
    done
    for round in $(seq "$PERCONN_ROUNDS"); do
        if [ $((round % 2)) = 1 ]; then
            perconn_run a "$round"
            perconn_run c "$round"
        else
            perconn_run c "$round"
            perconn_run a "$round"
        fi
    done
    echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
    awk '{ u[$1, $2] = $3; if ($1 > n) n = $1 }
         END { for (r = 1; r <= n; r++)
                   printf "%d %.3f %.3f %.4f\n", r, u[r, "a"], u[r, "c"],
                          u[r, "c"] / u[r, "a"] }' "$WORK/perconn" \
        >"$WORK/perconn.rounds"
    echo "per round: round, (a) us/connection, (c) us/connection, (c)/(a):"
    sed -e 's/^/  /' "$WORK/perconn.rounds"
    printf '  %-24s %10s %10s %10s %8s\n' "" Q1 median Q3 "IQR/med"
    for v in a c; do
        awk -v v="$v" '$2 == v { print $3 }' "$WORK/perconn" | quartiles \
            | awk -v l="${LABEL[$v]} us/conn" '{
                printf "  %-24s %10.2f %10.2f %10.2f %7.1f%%\n",
                       l, $1, $2, $3, 100 * ($3 - $1) / $2 }'
    done
    awk '{ print $4 }' "$WORK/perconn.rounds" | quartiles \
        | awk '{ printf "  %-24s %10.4f %10.4f %10.4f %7.1f%%\n",
                 "ratio (c)/(a)", $1, $2, $3, 100 * ($3 - $1) / $2 }'
    # The listener threads' share (accepts, lingering closes, the
    # handing of connections to workers), and the per-round difference
    # (c) - (a) of the listener and of the rest.
    for v in a c; do
        awk -v v="$v" '$2 == v { print $4 }' "$WORK/perconn" | quartiles \
            | awk -v l="${LABEL[$v]:0:3} listener us/conn" '{
                printf "  %-24s %10.2f %10.2f %10.2f\n", l, $1, $2, $3 }'
    done
    # How often the listeners woke: one wake-up for several events when
    # they come together, one each when they come apart.
    for v in a c; do
        awk -v v="$v" '$2 == v { print $5 }' "$WORK/perconn" | quartiles \
            | awk -v l="${LABEL[$v]:0:3} listener wakes/conn" '{
                printf "  %-24s %10.3f %10.3f %10.3f\n", l, $1, $2, $3 }'
    done
    # Every thread's (listener and workers) scheduler counts: a worker
    # that waits for its connection's next bytes sleeps once more.
    printf '  %-24s %10s %10s %10s\n' "median a connection" wake-ups \
        preemptions migrations
    for v in a c; do
        printf '  %-24s' "${LABEL[$v]:0:3} all threads"
        for col in 7 8 9; do
            printf ' %10.3f' "$(awk -v v="$v" -v k="$col" '$2 == v { print $k }' \
                "$WORK/perconn" | median)"
        done
        echo
    done
    awk '{ t[$1, $2] = $3; l[$1, $2] = $4; if ($1 > n) n = $1 }
         END { for (r = 1; r <= n; r++)
                   print l[r, "c"] - l[r, "a"],
                         (t[r, "c"] - l[r, "c"]) - (t[r, "a"] - l[r, "a"]) }' \
        "$WORK/perconn" >"$WORK/perconn.split"
    printf '  (c) - (a) per round, median us/conn: listener %+.2f,' \
        "$(awk '{ print $1 }' "$WORK/perconn.split" | median)"
    printf ' other threads %+.2f\n' \
        "$(awk '{ print $2 }' "$WORK/perconn.split" | median)"
    # The sender's pace: the balancer's CPU a connection (ab's connection
    # and Apache's, the header for (c), HAPROXY_SPIN's spin).
    if [ "$PERCONN_SENDER" = balancer ]; then
        for v in a c; do
            awk -v v="$v" '$2 == v { print $6 }' "$WORK/perconn" | quartiles \
                | awk -v l="${LABEL[$v]:0:3} $BALANCER us/conn" '{
                    printf "  %-24s %10.2f %10.2f %10.2f\n", l, $1, $2, $3 }'
        done
        pace=$(awk '{ h[$1, $2] = $6; if ($1 > n) n = $1 }
                    END { for (r = 1; r <= n; r++)
                              print h[r, "c"] - h[r, "a"] }' "$WORK/perconn" \
               | median)
        printf '  (c) - (a) per round, median %s us/conn: %+.2f%s\n' \
            "$BALANCER" "$pace" "${HAPROXY_SPIN:+ (HAPROXY_SPIN=$HAPROXY_SPIN)}"
        # A sender slower on one port makes Apache dearer there with
        # nothing else changed (docs/benchmarks.md, "The sender's pace"):
        # say so when the paces differ, unless HAPROXY_SPIN set them.
        [ -n "$HAPROXY_SPIN" ] \
            || ! awk -v p="$pace" 'BEGIN { exit !(p > 2 || p < -2) }' \
            || echo "  note: $BALANCER's pace differs ($(printf '%+.2f' \
                "$pace") us a connection): a slower sender alone costs" \
                "Apache more CPU a connection (A/A with 12 us: 1.5 to 2 %" \
                "pinned, 0.4 % in one run unpinned)$([ "$BALANCER" != haproxy ] \
                || echo "; HAPROXY_SPIN compares at one pace")"
    fi
    # Each variant's connections a second, as the sender counted them.
    for v in a c; do
        for round in $(seq "$PERCONN_ROUNDS"); do
            if [ "$PERCONN_SENDER" = direct ]; then
                awk '{ print $3 }' "$WORK/perconn.ab.$v.$round"
            else
                awk '/^Requests per second:/ { print $4 }' \
                    "$WORK/perconn.ab.$v.$round"
            fi
        done | quartiles \
            | awk -v l="${LABEL[$v]:0:3} connections/s" '{
                printf "  %-24s %10.0f %10.0f %10.0f\n", l, $1, $2, $3 }'
    done
    # The median's 95 % confidence interval, by bootstrap over the rounds
    # (2,000 resamples, fixed seed): settled when it lies wholly inside
    # or wholly outside 0.98-1.02.
    awk '{ print $4 }' "$WORK/perconn.rounds" | bootstrap_median \
        | awk -v aa="$([ "$SAME_INSTANCE" = aa ] && echo 1 || echo 0)" \
            '{ lo = $1; hi = $2
                 printf "  median (c)/(a), 95 %% bootstrap interval:" \
                        " %.4f-%.4f\n", lo, hi
                 printf "  %s: Apache CPU per connection of (c) within" \
                        " 2 %% of (a): %s\n", aa ? "A/A control (no PROXY" \
                        " on either port)" : "target",
                        (lo >= 0.98 && hi <= 1.02) ? "MET" :
                        (hi < 0.98 || lo > 1.02) ? "NOT MET" :
                        "NOT SETTLED (the interval straddles a bound:" \
                        " more rounds, or a quieter machine)" }'
    if ! command -v strace >/dev/null; then
        echo "(strace not found: no system call count)"
        return
    fi
    s_a=$(perconn_strace a)
    s_c=$(perconn_strace c)
    echo "system calls per connection (strace -c -f on the children," \
        "$PERCONN_STRACE_CONNECTIONS connections): (a) $s_a, (c) $s_c"
    join -a1 -a2 -e0 -o 0,1.2,2.2 "$WORK/strace.a.calls" \
        "$WORK/strace.c.calls" \
        | awk -v n="$PERCONN_STRACE_CONNECTIONS" '{
            printf "  %-20s %8.2f %8.2f\n", $1, $2 / n, $3 / n }' \
        | sort -k2,2gr
}

# perf on V's listener (or worker: TRACED) threads while the sender
# makes PERCONN_PERF_CONNECTIONS connections.  The samples give each
# symbol's share only (task-clock every 100 us of the threads' CPU: at
# shorter periods this VM drops ticks and counts about half the time);
# the same threads' CPU over the same connections (schedstat) scales
# them, perf's own cost included (with 128 worker threads recorded their
# total exceeds part 4's CPU a connection: compare symbols, not totals).
# Writes "symbol us_per_connection" lines to $WORK/perf.V.syms.
perconn_perf() {   # perconn_perf V
    local v=$1 tids ppid l0 l1 ok=1
    tids=$(traced_tids "$v")
    perf record -q -e task-clock -c 100000 -t "$tids" \
        -o "$WORK/perf.$v.data" 2>"$WORK/perf.$v.log" &
    ppid=$!
    sleep 1
    kill -0 "$ppid" 2>/dev/null \
        || die "perf record did not start: $(cat "$WORK/perf.$v.log")"
    l0=$(traced_cpu_ns "$v")
    perconn_ab "$v" "$PERCONN_PERF_CONNECTIONS" "$PERCONN_CONCURRENCY" \
        "$WORK/perf.ab.$v" || ok=
    l1=$(traced_cpu_ns "$v")
    kill -INT "$ppid" 2>/dev/null || true
    wait "$ppid" 2>/dev/null || true
    [ -n "$ok" ] || die "${LABEL[$v]}: errors under perf, see $WORK/perf.ab.$v"
    perf report -i "$WORK/perf.$v.data" --stdio --no-children \
        --sort sym -F sample,sym 2>>"$WORK/perf.$v.log" \
        | awk -v us="$(( (l1 - l0) / 1000 ))" -v n="$PERCONN_PERF_CONNECTIONS" '
            $1 ~ /^[0-9]+$/ { c = $1; $1 = ""; sub(/^ +/, ""); gsub(/ /, "_")
                              k[$0] += c; total += c }
            END { for (s in k) printf "%s %.3f\n", s, us / n * k[s] / total }' \
        | LC_ALL=C sort -k1,1 >"$WORK/perf.$v.syms"
    [ -s "$WORK/perf.$v.syms" ] \
        || die "perf report gave nothing, see $WORK/perf.$v.log"
}

# CPU time so far of the threads that 4b looks at in V, in ns.
traced_cpu_ns() {   # traced_cpu_ns V
    # shellcheck disable=SC2046
    threads_cpu_ns $(traced_threads "$1")
}

# The heading of 4b or 4c, then FN a and FN c, each on the threads of its
# variant that SETTING (listeners, or workers: the other threads) names,
# under perf during PERCONN_PERF_CONNECTIONS.  Sets TRACED.
TRACED=listeners
on_threads() {   # on_threads SWITCH SETTING HEADING FN
    local v
    command -v perf >/dev/null || die "$1 needs perf (linux-perf)"
    case $2 in
    1|listeners) TRACED=listeners ;;
    *) TRACED=workers ;;
    esac
    echo
    echo "$3, the $TRACED, $PERCONN_PERF_CONNECTIONS connections each" \
        "($(perconn_sender)) =="
    for v in a c; do
        find_listeners "$v"
        find_workers "$v"
    done
    for v in a c; do
        "$4" "$v"
    done
}

# The listener (or worker) threads of (a) and (c) by symbol
# (PERCONN_PERF=1|listeners|workers).
threads_profile() {
    on_threads PERCONN_PERF "$PERCONN_PERF" \
        "== 4b. The threads by symbol, perf task-clock" perconn_perf
    printf '  %-48s %8s %8s %8s\n' "us/connection" "(a)" "(c)" "(c)-(a)"
    LC_ALL=C join -a1 -a2 -e0 -o 0,1.2,2.2 "$WORK/perf.a.syms" \
        "$WORK/perf.c.syms" >"$WORK/perf.joined"
    awk '$2 >= 0.05 || $3 >= 0.05 {
             printf "  %-48s %8.2f %8.2f %+8.2f\n", $1, $2, $3, $3 - $2 }' \
        "$WORK/perf.joined" | sort -k4,4gr
    awk '{ a += $2; c += $3 }
         END { printf "  %-48s %8.2f %8.2f %+8.2f\n", "total (every symbol)",
                      a, c, c - a }' "$WORK/perf.joined"
}

# The kernel's events in the traced threads (PERCONN_TRACE).  Counted
# per thread, so a packet counts where it is processed: a segment that
# arrives while its socket is locked waits in the socket's backlog and is
# processed by the thread that holds the lock, when it lets go.
TRACE_EVENTS=net:netif_receive_skb,net:net_dev_xmit,sched:sched_switch
for call in epoll_wait epoll_ctl accept4 read recvfrom poll writev \
    shutdown close futex; do
    TRACE_EVENTS=$TRACE_EVENTS,syscalls:sys_enter_$call
done

# Writes "event per_connection" lines to $WORK/trace.V.per.
perconn_trace() {   # perconn_trace V
    local v=$1 tids ppid ok=1
    tids=$(traced_tids "$v")
    perf stat -x, -e "$TRACE_EVENTS" -t "$tids" -o "$WORK/trace.$v" \
        2>"$WORK/trace.$v.log" &
    ppid=$!
    sleep 1
    kill -0 "$ppid" 2>/dev/null \
        || die "perf stat did not start: $(cat "$WORK/trace.$v.log")"
    perconn_ab "$v" "$PERCONN_PERF_CONNECTIONS" "$PERCONN_CONCURRENCY" \
        "$WORK/trace.ab.$v" || ok=
    settled_cpu_ns "$v" >/dev/null
    kill -INT "$ppid" 2>/dev/null || true
    wait "$ppid" 2>/dev/null || true
    [ -n "$ok" ] || die "${LABEL[$v]}: errors under perf stat, see $WORK/trace.ab.$v"
    # perf stat -x, lines: "count,unit,event,...".
    awk -F, -v n="$PERCONN_PERF_CONNECTIONS" '$3 ~ /:/ && $1 ~ /^[0-9]+$/ {
            printf "%s %.3f\n", $3, $1 / n }' "$WORK/trace.$v" \
        | LC_ALL=C sort -k1,1 >"$WORK/trace.$v.per"
    # perf prints "<not counted>" or "<not supported>" for an event it
    # could not count: every event must have its figure.
    [ "$(wc -l <"$WORK/trace.$v.per")" = "$(echo "$TRACE_EVENTS" | tr , '\n' | wc -l)" ] \
        || die "perf stat did not count every event, see $WORK/trace.$v and $WORK/trace.$v.log"
}

# The listener (or worker) threads' kernel events of (a) and (c)
# (PERCONN_TRACE=1|listeners|workers).
threads_trace() {
    on_threads PERCONN_TRACE "$PERCONN_TRACE" \
        "== 4c. The kernel's events in the threads, a connection" \
        perconn_trace
    printf '  %-28s %8s %8s %8s\n' "per connection" "(a)" "(c)" "(c)-(a)"
    LC_ALL=C join -a1 -a2 -e0 -o 0,1.2,2.2 "$WORK/trace.a.per" \
        "$WORK/trace.c.per" \
        | awk '{ printf "  %-28s %8.3f %8.3f %+8.3f\n", $1, $2, $3, $3 - $2 }'
}
