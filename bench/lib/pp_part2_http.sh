# shellcheck shell=bash
# bench/lib/pp_part2_http.sh: part 2 of bench/proxy_protocol.sh, the HTTP
# benchmark: wrk through the balancer (or direct) to (a), (b) and (c), in
# interleaved rounds (round_order), each run measured (measure) and
# appended to $WORK/results, then the summary with the medians, ratios
# and verdicts.  Entry point: macro_benchmark (write_wrk_script first).
#
# Expects from the caller: the settings WORKLOADS, ROUNDS, DURATION, WARMUP,
# CONNECTIONS, WRK, WRK_THREADS, PROXY_VERSION, BALANCER, ORDER,
# APACHE_CPU_QUOTA; WORK, VARIANTS, LABEL, APACHE_PORT, FRONT_PORT,
# FRONT_TLS_PORT, ON_CLIENT_CPUS; running servers (pp_servers.sh, whose CPU
# and error-log readers it uses) and median (stats.sh).

# Rounds for workload $1: ROUNDS if set, else 7 for the TLS workloads (the
# deployment the module is for) and 5 for the others, so that the default
# run stays under about 4 minutes.
rounds_for() {
    if [ -n "$ROUNDS" ]; then
        echo "$ROUNDS"
    else
        case $1 in
        tls*) echo 7 ;;
        *)    echo 5 ;;
        esac
    fi
}

# For the direct workload: wrk writes a PROXY header (when PP_SEND=1) and
# the request in one go; every request is on a new connection.
write_wrk_script() {
    cat >"$WORK/direct.lua" <<'EOF'
local prefix = ""
if os.getenv("PP_SEND") == "1" then
    if os.getenv("PP_VERSION") == "2" then
        -- v2, PROXY, TCP over IPv4: 203.0.113.195:56324 -> 127.0.0.1:443
        prefix = string.char(13, 10, 13, 10, 0, 13, 10, 81, 85, 73, 84, 10,
                             0x21, 0x11, 0, 12, 203, 0, 113, 195, 127, 0, 0, 1,
                             0xDC, 0x04, 0x01, 0xBB)
    else
        prefix = "PROXY TCP4 203.0.113.195 127.0.0.1 56324 443\r\n"
    end
end
-- wrk checks the first request of its first thread with an HTTP parser,
-- which the PROXY header would fail: that one (never sent) is the bare
-- request.
local threads = 0
function setup(thread)
    thread:set("first_thread", threads == 0)
    threads = threads + 1
end
local req
request = function()
    if not req then
        req = prefix .. wrk.format()
        if first_thread then
            return wrk.format()
        end
    end
    return req
end
EOF
}

# run_wrk VARIANT WORKLOAD SECONDS OUTFILE
run_wrk() {
    local v=$1 workload=$2 seconds=$3 out=$4
    local url="http://127.0.0.1:${FRONT_PORT[$v]}/index.html"
    local args=(-H "Connection: close")
    case $workload in
    keepalive)
        args=(-H "Connection: keep-alive")
        ;;
    direct)
        url="http://127.0.0.1:${APACHE_PORT[$v]}/index.html"
        args=(-H "Connection: close" -s "$WORK/direct.lua")
        ;;
    tls)
        url="https://127.0.0.1:${FRONT_TLS_PORT[$v]}/index.html"
        ;;
    tls-keepalive)
        url="https://127.0.0.1:${FRONT_TLS_PORT[$v]}/index.html"
        args=(-H "Connection: keep-alive")
        ;;
    esac
    PP_SEND=$([ "$v" = a ] && echo 0 || echo 1) PP_VERSION=$PROXY_VERSION \
        "${ON_CLIENT_CPUS[@]}" "$WRK" -t "$WRK_THREADS" -c "$CONNECTIONS" \
        -d "${seconds}s" --latency "${args[@]}" "$url" >"$out" 2>&1 || true
}

# Prints "requests req/s p99_ms errors" from a wrk output file.  errors is
# socket errors plus non-2xx/3xx responses; a run without a result counts
# as one error.
parse_wrk() {
    awk '
        /requests in/           { req = $1 }
        /^Requests\/sec:/       { rps = $2 }
        $1 == "99%" {
            v = $2; unit = v; sub(/[0-9.]+/, "", unit); sub(/[a-z]+$/, "", v)
            p99 = unit == "us" ? v / 1000 : unit == "s" ? v * 1000 : v
        }
        /Socket errors:/        { gsub(",", ""); err += $4 + $6 + $8 + $10 }
        /Non-2xx or 3xx/        { err += $5 }
        END {
            if (rps == "" || p99 == "" || req == 0) { print 0, 0, 0, 1; exit }
            print req, rps, p99, err + 0
        }' "$1"
}

# One measured run; appends to $WORK/results:
#   workload variant round req/s p99_ms errors httpd_us_per_req httpd_cpu%
#   balancer_us_per_req client_cpu_busy% throttled%
# (the balancer's CPU time per request, and how busy the CPU that wrk
# and the balancer share was: near 100 %, the client side limits req/s; with
# APACHE_CPU_QUOTA, the share of the instance's cgroup periods in which
# the quota ran out, else "-")
measure() {
    local v=$1 workload=$2 round=$3 out cpu0 cpu1 warn0 warn1 ref0 ref1
    local req rps p99 err us pct flag="" refused allowed=0
    local hcpu0 hcpu1 busy0 tot0 busy1 tot1 hus cbusy
    local per0 thr0 per1 thr1 thr=- thr_text=""
    out=$WORK/wrk.$workload.$v.$round
    cpu0=$(apache_cpu_ns "$v")
    hcpu0=$(balancer_cpu_ns)
    read -r busy0 tot0 < <(client_cpu_ticks)
    read -r warn0 ref0 < <(error_log_counts "$v")
    read -r per0 thr0 < <(cgroup_throttling "$v")
    run_wrk "$v" "$workload" "$DURATION" "$out"
    read -r per1 thr1 < <(cgroup_throttling "$v")
    cpu1=$(apache_cpu_ns "$v")
    hcpu1=$(balancer_cpu_ns)
    read -r busy1 tot1 < <(client_cpu_ticks)
    read -r warn1 ref1 < <(error_log_counts "$v")
    read -r req rps p99 err < <(parse_wrk "$out")
    # Warnings logged during the run are errors, and so are connections the
    # module refused, except in the direct workload up to one per wrk
    # connection and thread: wrk closes, when time is up, the connections
    # it has opened but not yet written to, and it opens and closes one
    # at start to check the address.
    err=$((err + warn1 - warn0))
    refused=$((ref1 - ref0))
    [ "$workload" != direct ] || allowed=$((CONNECTIONS + WRK_THREADS + 1))
    [ "$refused" -le "$allowed" ] || err=$((err + refused))
    read -r us pct < <(awk -v c="$((cpu1 - cpu0))" -v r="$req" \
        -v d="$DURATION" 'BEGIN {
            printf "%.1f %.0f\n", r ? c / 1000 / r : 0, c / 1e7 / d }')
    read -r hus cbusy < <(awk -v c="$((hcpu1 - hcpu0))" -v r="$req" \
        -v b="$((busy1 - busy0))" -v t="$((tot1 - tot0))" 'BEGIN {
            printf "%.1f %.0f\n", r ? c / 1000 / r : 0, t ? 100 * b / t : 0 }')
    if [ -n "$APACHE_CPU_QUOTA" ]; then
        thr=$(awk -v p="$((per1 - per0))" -v t="$((thr1 - thr0))" \
            'BEGIN { printf "%.0f\n", p ? 100 * t / p : 0 }')
        thr_text="  throttled $thr%"
    fi
    [ "$err" = 0 ] || flag="  <-- ERRORS, see $out"
    printf '%-13s %-24s round %d: %9.0f req/s  p99 %7.2f ms  httpd %6.1f us/req %4s%%  %s %5.1f us/req  client CPU %3s%%%s  errors %s%s\n' \
        "$workload" "${LABEL[$v]}" "$round" "$rps" "$p99" "$us" "$pct" \
        "$BALANCER" "$hus" "$cbusy" "$thr_text" "$err" "$flag"
    echo "$workload $v $round $rps $p99 $err $us $pct $hus $cbusy $thr" \
        >>"$WORK/results"
}

warm_up() {
    local workload=$1 v req rps p99 err
    for v in $VARIANTS; do
        run_wrk "$v" "$workload" "$WARMUP" "$WORK/warmup.$workload.$v"
        read -r req rps p99 err < <(parse_wrk "$WORK/warmup.$workload.$v")
        [ "$err" = 0 ] || echo "warning: warm-up of ${LABEL[$v]} ($workload)" \
            "had $err errors, see $WORK/warmup.$workload.$v"
    done
}

# field N of the results of one workload and variant, one per line
field() {
    awk -v w="$1" -v v="$2" -v f="$3" '$1 == w && $2 == v { print $f }' \
        "$WORK/results"
}

# Median over rounds of the per-round ratio X/Y of field F.
paired_ratio() {
    local w=$1 x=$2 y=$3 f=$4
    paste <(field "$w" "$x" "$f") <(field "$w" "$y" "$f") \
        | awk '$2 != 0 { print $1 / $2 }' | median
}

ratio_range() {
    local w=$1 x=$2 y=$3 f=$4
    paste <(field "$w" "$x" "$f") <(field "$w" "$y" "$f") \
        | awk '$2 != 0 { r = $1 / $2; if (n++ == 0 || r < lo) lo = r
                         if (n == 1 || r > hi) hi = r }
               END { if (n) printf "%.3f-%.3f", lo, hi; else print "-" }'
}

verdict() {   # verdict VALUE THRESHOLD -> MET / NOT MET
    awk -v x="$1" -v t="$2" 'BEGIN { print (x >= t ? "MET" : "NOT MET") }'
}

summary() {
    local w v rps p99 us pct hus cbusy errs ca cb thr quota=""
    [ -z "$APACHE_CPU_QUOTA" ] \
        || quota=", APACHE_CPU_QUOTA=$APACHE_CPU_QUOTA (% of one CPU)"
    echo
    echo "== Summary: medians of interleaved rounds of ${DURATION}s," \
        "$CONNECTIONS connections, PROXY v$PROXY_VERSION," \
        "$(balancer_settings), ORDER=$ORDER$quota =="
    for w in $WORKLOADS; do
        echo
        case $w in
        close)     echo "workload: close (via $BALANCER, new connection per request)" ;;
        keepalive) echo "workload: keepalive (via $BALANCER, $CONNECTIONS persistent connections)" ;;
        direct)    echo "workload: direct (no balancer, new connection per request, wrk sends the header)" ;;
        tls)       echo "workload: tls (via $BALANCER, TLS terminated by Apache, new connection and full handshake per request)" ;;
        tls-keepalive) echo "workload: tls-keepalive (via $BALANCER, TLS terminated by Apache, $CONNECTIONS persistent connections)" ;;
        esac
        echo "  medians of $(rounds_for "$w") rounds:"
        if [ -n "$APACHE_CPU_QUOTA" ]; then
            printf '  %-24s %10s %10s %12s %9s %14s %10s %9s %7s\n' variant \
                "req/s" "p99 ms" "httpd us/req" "httpd CPU" \
                "$BALANCER us/req" "client CPU" throttled errors
        else
            printf '  %-24s %10s %10s %12s %9s %14s %10s %7s\n' variant \
                "req/s" "p99 ms" "httpd us/req" "httpd CPU" \
                "$BALANCER us/req" "client CPU" errors
        fi
        for v in $VARIANTS; do
            rps=$(field "$w" "$v" 4 | median)
            p99=$(field "$w" "$v" 5 | median)
            us=$(field "$w" "$v" 7 | median)
            pct=$(field "$w" "$v" 8 | median)
            hus=$(field "$w" "$v" 9 | median)
            cbusy=$(field "$w" "$v" 10 | median)
            errs=$(field "$w" "$v" 6 | awk '{ s += $1 } END { print s + 0 }')
            if [ -n "$APACHE_CPU_QUOTA" ]; then
                thr=$(field "$w" "$v" 11 | median)
                printf '  %-24s %10.0f %10.2f %12.1f %8.0f%% %14.1f %9.0f%% %8.0f%% %7d\n' \
                    "${LABEL[$v]}" "$rps" "$p99" "$us" "$pct" "$hus" \
                    "$cbusy" "$thr" "$errs"
            else
                printf '  %-24s %10.0f %10.2f %12.1f %8.0f%% %14.1f %9.0f%% %7d\n' \
                    "${LABEL[$v]}" "$rps" "$p99" "$us" "$pct" "$hus" \
                    "$cbusy" "$errs"
            fi
        done
        ca=$(paired_ratio "$w" c a 4)
        cb=$(paired_ratio "$w" c b 4)
        echo "  ratios (median of per-round ratios; range over rounds):"
        printf '    req/s  (c)/(a) %.3f (%s)   (c)/(b) %.3f (%s)\n' \
            "$ca" "$(ratio_range "$w" c a 4)" "$cb" "$(ratio_range "$w" c b 4)"
        printf '    p99    (c)/(a) %.3f (%s)   (c)/(b) %.3f (%s)\n' \
            "$(paired_ratio "$w" c a 5)" "$(ratio_range "$w" c a 5)" \
            "$(paired_ratio "$w" c b 5)" "$(ratio_range "$w" c b 5)"
        printf '    httpd us/req (c)/(a) %.3f (%s)   (c)/(b) %.3f (%s)\n' \
            "$(paired_ratio "$w" c a 7)" "$(ratio_range "$w" c a 7)" \
            "$(paired_ratio "$w" c b 7)" "$(ratio_range "$w" c b 7)"
        printf '    %s us/req (c)/(a) %.3f (%s)   (c)/(b) %.3f (%s)\n' "$BALANCER" \
            "$(paired_ratio "$w" c a 9)" "$(ratio_range "$w" c a 9)" \
            "$(paired_ratio "$w" c b 9)" "$(ratio_range "$w" c b 9)"
        echo "  target: (c) req/s >= 0.98 x (a): $(verdict "$ca" 0.98)"
        echo "  target: (c) req/s >= 1.00 x (b): $(verdict "$cb" 1.00)"
    done
    errs=$(awk '$6 != 0' "$WORK/results" | wc -l)
    if [ "$errs" != 0 ]; then
        echo
        echo "WARNING: $errs run(s) had errors (flagged above); their" \
            "figures are not trustworthy."
    else
        echo
        echo "every request of every measured run succeeded (no socket" \
            "errors, no non-2xx, no warning or refused connection in the" \
            "error logs)"
    fi
}

# The variants in the order round N runs them: with ORDER=rotate, round 1
# runs a b c, round 2 b c a, round 3 c a b, ..., so that no variant is
# always first or last in a round (what ran just before, the sockets it
# left in TIME_WAIT, other work on the machine that comes and goes).
round_order() {
    local vs=($VARIANTS) n i
    n=${#vs[@]}
    for ((i = 0; i < n; i++)); do
        if [ "$ORDER" = rotate ]; then
            echo "${vs[$(((i + $1 - 1) % n))]}"
        else
            echo "${vs[$i]}"
        fi
    done
}

macro_benchmark() {
    local w round v
    : >"$WORK/results"
    for w in $WORKLOADS; do
        echo
        echo "-- workload $w: warm-up ${WARMUP}s each, then" \
            "$(rounds_for "$w") rounds --"
        warm_up "$w"
        for round in $(seq "$(rounds_for "$w")"); do
            for v in $(round_order "$round"); do
                measure "$v" "$w" "$round"
            done
        done
    done
    summary
}
