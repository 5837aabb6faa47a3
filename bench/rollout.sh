#!/bin/bash
#
# bench/rollout.sh: staggered restarts of a whole pool (ARCHITECTURE.md
# section 6) with many domains per proxy.
#
# For each size N of ROLLOUT_SIZES, a fresh demo pool of t/lib/pool.sh
# on 127.0.0.1 (CertService, backend, three proxies with mod_certsync /
# mod_macro_gen / mod_ssl, HAProxy with agent-check) and:
#
#   issue     N domains issued on CertService before the proxies start
#             (PUT /v1/domains/D as admin, ROLLOUT_ISSUE_WORKERS kept-alive
#             connections); each a real issuance (ECDSA P-256 key, local
#             CA, key sealed as CMS).  -> domains/s.  If the rate measured
#             on the first 200 says N would take more than
#             ROLLOUT_MAX_ISSUE_SECONDS, N is lowered to fit (and said so).
#   initial   the three proxies start with empty stores: each syncs all N
#             bundles, then they restart one at a time (lease, drain,
#             graceful restart with N TLS virtual hosts, probe).  -> time
#             from the proxies' start to the last one done (CY00014)
#   rollout   a light client load through HAProxy (t/lib/rollout.sh: one
#             worker with a new TLS connection per request, one with
#             kept-alive connections, over ROLLOUT_LOAD_DOMAINS of the
#             domains); ROLLOUT_CHANGES domains re-issued at once (half of
#             them under load); every proxy restarts with its N virtual
#             hosts.  -> time from the first change to the last proxy done
#             and to every proxy serving every new serial; for each host
#             the time out of rotation (HAProxy not UP, or certsync
#             draining/restarting, sampled every RT_SAMPLE_MS) and the
#             graceful reload (SIGUSR1 to "resuming normal operations" in
#             its error log); the most hosts out at once; requests and
#             failed requests (a failure: not a 200, or a curl error)
#
# Checked, not timed: every proxy presents CertService's serial (GET
# /v1/domains, admin) for every changed domain and for ROLLOUT_SAMPLE
# other domains.
#
# Usage: bench/rollout.sh        (build first: make; needs curl, openssl,
#                                 jq, haproxy, sqlite3 optional)
#
# Environment [defaults]:
#   ROLLOUT_SIZES            domains per proxy, one run each ["1000 10000"]
#   ROLLOUT_CHANGES          domains re-issued in the timed rollout [20]
#   ROLLOUT_LOAD_DOMAINS     domains under load [50]
#   ROLLOUT_SAMPLE           domains checked per proxy after each phase [300]
#   ROLLOUT_ISSUE_WORKERS    parallel issuing connections [2]
#   ROLLOUT_MAX_ISSUE_SECONDS  issuance budget per size [300]
#   ROLLOUT_LEASE_TTL        CertSyncLeaseTTL [300] (renewed every third
#                            of it while a host drains, reloads and
#                            probes); waiting hosts ask again each
#                            CertSyncInterval, so it costs no time
#   ROLLOUT_RESTART_TIMEOUT  CertSyncRestartTimeout [120]
#   ROLLOUT_WAIT             seconds allowed per phase [900]
#   RT_SAMPLE_MS, RT_LOAD_*  see t/lib/rollout.sh
#   CERTSUITE_KEEP=1         keep the directories
#
# Runs as a normal user or as root.  127.0.0.1/127.0.0.2 only, ports from
# 61000 up; everything it starts is stopped on exit.
#
set -u
export LC_ALL=C

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)

SIZES=${ROLLOUT_SIZES:-1000 10000}
CHANGES=${ROLLOUT_CHANGES:-20}
LOAD_DOMAINS=${ROLLOUT_LOAD_DOMAINS:-50}
SAMPLE=${ROLLOUT_SAMPLE:-300}
ISSUE_WORKERS=${ROLLOUT_ISSUE_WORKERS:-2}
MAX_ISSUE=${ROLLOUT_MAX_ISSUE_SECONDS:-300}
WAIT=${ROLLOUT_WAIT:-900}
export RT_RESTART_TIMEOUT=${ROLLOUT_RESTART_TIMEOUT:-120}
RT_LOAD_NEW=${RT_LOAD_NEW:-1}
RT_LOAD_KA=${RT_LOAD_KA:-1}
RT_LOAD_PAUSE=${RT_LOAD_PAUSE:-0.3}

# shellcheck source=../t/lib/rollout.sh
. "$top/t/lib/rollout.sh"

for p in curl openssl jq awk; do
    command -v $p >/dev/null 2>&1 || die "$p is needed"
done

cs_tmpdir rollout-bench || die "mktemp failed"
chmod 755 "$tmp"
on_cleanup() {
    rt_sampler_stop
    rt_load_stop
    pool_stop_all
}

now() { date +%s.%N | cut -c1-14; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

# issue FILE: PUT every name of FILE (one a line) on CertService, over
# ISSUE_WORKERS kept-alive connections; prints how many failed
issue() {
    local f=$1 w chunk pids=()
    split -n "l/$ISSUE_WORKERS" "$f" "$f.part."
    for chunk in "$f".part.*; do
        [ -s "$chunk" ] || continue
        {
            echo 'request = "PUT"'
            echo 'header = "Content-Type: application/json"'
            echo 'data = "{}"'
            echo 'write-out = "%{http_code}\n"'
            while read -r name; do
                echo "url = \"$POOL_CS_URL/v1/domains/$name\""
                echo 'output = "/dev/null"'
            done <"$chunk"
        } >"$chunk.cfg"
        curl -sS --noproxy '*' --max-time 3600 \
            --cacert "$POOL_PKI/clients-ca.crt" \
            --cert "$POOL_PKI/admin.crt" --key "$POOL_PKI/admin.key" \
            -K "$chunk.cfg" >"$chunk.codes" 2>&1 &
        pids+=($!)
    done
    for w in "${pids[@]}"; do wait "$w"; done
    cat "$f".part.*.codes 2>/dev/null | grep -vE '^20[01]$' | sort | uniq -c \
        | sed 's/^/  not issued: /' >&2
    cat "$f".part.*.codes 2>/dev/null | grep -cvE '^20[01]$'
    rm -f "$f".part.*
}

# cs_serials OUT: "name serial" of every domain CertService has
cs_serials() {
    local after='' page
    : >"$1"
    while :; do
        page=$(pool_cs_curl admin "/v1/domains?limit=1000${after:+&after=$after}") \
            || return 1
        jq -r '.domains[] | "\(.domain) \(.serial)"' <<<"$page" >>"$1"
        after=$(jq -r '.next // empty' <<<"$page")
        [ -n "$after" ] && [ "$(jq '.domains | length' <<<"$page")" -gt 0 ] \
            || break
    done
}

# settled SINCE: every proxy finished a rollout (CY00014 or CY00015) after
# SINCE, is idle with no rollout.json, and HAProxy has it UP; prints the
# time of the last CY00014/CY00015
settled() {
    local n last=0 t
    for n in 1 2 3; do
        t=$(rt_log_lines "$n" 'CY0001' "$1" | grep -E 'CY0001[45]:' \
            | tail -n 1 | awk '{ print $1 }')
        [ -n "$t" ] || return 1
        [ -e "$POOL_DIR/proxy$n/store/rollout.json" ] && return 1
        [ "$(rt_json_state $n)" = "idle ready" ] || return 1
        [ "$(pool_lb_state $n)" = UP ] || return 1
        last=$(awk -v a="$last" -v b="$t" 'BEGIN { print (b > a ? b : a) }')
    done
    echo "$last"
}

# reloads N SINCE: seconds of each graceful reload of proxy N after SINCE
reloads() {
    local line t start=
    grep -E 'AH00493:|AH00489:' "$POOL_DIR/proxy$1/logs/error_log" \
    | while IFS= read -r line; do
        t=$(rt_log_time "$line")
        awk -v a="$t" -v b="$2" 'BEGIN { exit !(a >= b) }' || continue
        case $line in
            *AH00493:*) start=$t ;;
            *AH00489:*) [ -n "$start" ] && secs "$start" "$t" && echo && start= ;;
        esac
    done | tr '\n' ' '
}

# periods N FROM: out-of-rotation periods of proxy N after FROM (seconds)
periods() {
    rt_out_periods "$RT_SAMPLE_FILE" "$1" \
        | awk -v a="$2" '$1 >= a { printf "%.1f ", $2 - $1 }'
}

# check FILE N...: the proxies present CertService's serials
check_served() {
    local f=$1 n bad=0
    shift
    for n in "$@"; do
        rt_served "$n" "$f" >"$f.got.$n"
        if ! awk -v p="$n" 'NR == FNR { g[$1] = $2; next }
                g[$1] != $2 { bad++; if (bad <= 3) print "  proxy" p ": " $1 \
                    " presents " g[$1] ", CertService has " $2 }
                END { exit bad > 0 }' "$f.got.$n" "$f"; then
            bad=1
        fi
    done
    return $bad
}

results=()
for N in $SIZES; do
    echo "== $N domains per proxy"
    dir=$tmp/n$N
    base=$(pool_pick_base) || die "no free ports"
    POOL_LEASE_TTL=${ROLLOUT_LEASE_TTL:-300}
    pool_init "$dir" "$base" >/dev/null || die "pool_init failed"
    { pool_pki && pool_start_certservice && pool_start_backend; } \
        >"$tmp/start.log" 2>&1 || { cat "$tmp/start.log"; die "pool start failed"; }

    # --- issue ---
    seq -f "b%05g.rollout-bench.test" 1 "$N" >"$dir/names"
    head -n 200 "$dir/names" >"$dir/first"
    t0=$(now)
    failed=$(issue "$dir/first")
    t1=$(now)
    rate=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", 200 / (b - a) }')
    n_fit=$(awk -v r="$rate" -v m="$MAX_ISSUE" 'BEGIN { printf "%d", r * m }')
    N_RUN=$N
    if [ "$n_fit" -lt "$N" ]; then
        N_RUN=$n_fit
        echo "issuing at $rate/s: $N would take $((N / rate)) s, over ROLLOUT_MAX_ISSUE_SECONDS=$MAX_ISSUE: running $N_RUN"
        head -n "$N_RUN" "$dir/names" >"$dir/names.run"
        mv "$dir/names.run" "$dir/names"
    fi
    tail -n +201 "$dir/names" >"$dir/rest"
    failed=$((failed + $(issue "$dir/rest")))
    t2=$(now)
    issue_s=$(secs "$t0" "$t2")
    issue_rate=$(awk -v n="$N_RUN" -v a="$t0" -v b="$t2" 'BEGIN { printf "%.0f", n / (b - a) }')
    echo "issue: $N_RUN domains in $issue_s s ($issue_rate/s, $ISSUE_WORKERS connections, $failed failed)"
    cs_serials "$dir/cs1" || die "cannot list CertService's domains"

    # --- initial: the proxies start with empty stores ---
    ta=$(now)
    for n in 1 2 3; do
        pool_start_proxy "$n" >>"$tmp/start.log" 2>&1 \
            || { cat "$tmp/start.log"; die "proxy $n did not start"; }
        rt_patch_conf "$n"
    done
    pool_start_haproxy >>"$tmp/start.log" 2>&1 \
        || { cat "$tmp/start.log"; die "HAProxy did not start"; }
    # Sampling from when every sync daemon has written its state.
    for ((i = 0; i < 300; i++)); do
        [ "$(rt_json_state 1)$(rt_json_state 2)$(rt_json_state 3)" = \
          "idle readyidle readyidle ready" ] && break
        [ -e "$POOL_DIR/proxy1/store/state.json" ] \
          && [ -e "$POOL_DIR/proxy2/store/state.json" ] \
          && [ -e "$POOL_DIR/proxy3/store/state.json" ] && break
        sleep 0.1
    done
    rt_sampler_start "$dir/samples"
    end=$((SECONDS + WAIT))
    tb=
    while ! tb=$(settled "${ta%.*}") && [ $SECONDS -lt $end ]; do sleep 1; done
    [ -n "$tb" ] || { pool_log_tail 5; die "the initial rollout did not finish in $WAIT s"; }
    initial_s=$(secs "$ta" "$tb")
    shuf -n "$SAMPLE" "$dir/cs1" >"$dir/check1" 2>/dev/null || head -n "$SAMPLE" "$dir/cs1" >"$dir/check1"
    if check_served "$dir/check1" 1 2 3; then ok1="all $(wc -l <"$dir/check1") checked served"; else ok1="SERIAL MISMATCH"; fi
    echo "initial: the 3 proxies went from empty stores to serving $N_RUN domains in $initial_s s ($ok1)"
    for n in 1 2 3; do
        sy=$(rt_log_lines "$n" 'CY00005:' "${ta%.*}" | head -n 1 | awk '{ print $1 }')
        echo "  proxy$n: synced $(secs "$ta" "${sy:-$ta}") s after start; reloads: $(reloads $n "${ta%.*}")s; out of rotation: $(periods $n "${ta%.*}")s"
    done

    # --- rollout of CHANGES re-issues, under a light load ---
    head -n "$LOAD_DOMAINS" "$dir/names" >"$dir/load"
    rt_load_start "$dir/loadlog" "$dir/load"
    sleep 3
    { head -n $((CHANGES / 2)) "$dir/names"
      tail -n $((CHANGES - CHANGES / 2)) "$dir/names"; } >"$dir/changes"
    tc=$(now)
    failed=$(issue "$dir/changes")
    tc1=$(now)
    cs_serials "$dir/cs2" || die "cannot list CertService's domains"
    awk 'NR == FNR { c[$1] = 1; next } c[$1]' "$dir/changes" "$dir/cs2" >"$dir/want"
    end=$((SECONDS + WAIT))
    served_at=
    td=
    while [ $SECONDS -lt $end ]; do
        if [ -z "$served_at" ] && check_served "$dir/want" 1 2 3 >/dev/null; then
            served_at=$(now)
        fi
        [ -n "$served_at" ] && td=$(settled "${tc%.*}") && break
        sleep 0.5
    done
    [ -n "$served_at" ] && [ -n "$td" ] || { pool_log_tail 5; die "the rollout did not finish in $WAIT s"; }
    sleep 2
    te=$(now)
    rt_load_stop
    counts=($(rt_load_counts "${tc%.*}" "${te%.*}"))
    all_counts=($(rt_load_counts))
    maxout=($(rt_max_out "$RT_SAMPLE_FILE" "$tc" "$te"))
    rt_sampler_stop
    roll_s=$(secs "$tc" "$td")
    served_s=$(secs "$tc" "$served_at")
    shuf -n "$SAMPLE" "$dir/cs2" >"$dir/check2" 2>/dev/null || head -n "$SAMPLE" "$dir/cs2" >"$dir/check2"
    cat "$dir/want" >>"$dir/check2"
    if check_served "$dir/check2" 1 2 3; then ok2="all $(wc -l <"$dir/check2") checked served"; else ok2="SERIAL MISMATCH"; fi
    echo "rollout: $CHANGES re-issues ($(secs "$tc" "$tc1") s to issue, $failed failed): every proxy serves them $served_s s after the first change, the last proxy done at $roll_s s ($ok2)"
    outs=
    for n in 1 2 3; do
        p=$(periods $n "$tc")
        r=$(reloads $n "${tc%.*}")
        echo "  proxy$n: out of rotation: ${p:-none }s; graceful reloads: ${r:-none }s"
        outs="$outs proxy$n ${p% }s;"
    done
    echo "  most hosts out of rotation at once: ${maxout[0]} (${maxout[1]} samples)"
    echo "  load during the rollout: ${counts[0]} requests (${counts[2]} on new connections, ${counts[3]} kept alive), ${counts[1]} failed; whole run ${all_counts[0]} requests, ${all_counts[1]} failed"
    results+=("| $N_RUN | $issue_s s ($issue_rate/s) | $initial_s s | $served_s s / $roll_s s |${outs% ;} | ${maxout[0]} | ${counts[0]} / ${counts[1]} |")
    pool_stop_all
    POOL_DIR=
    [ -n "${CERTSUITE_KEEP:-}" ] || rm -rf "$dir"
done

echo
echo "| domains per proxy | issue | initial rollout (empty stores) | rollout of $CHANGES changes: all served / last host done | out of rotation per host (drain to back UP) | most hosts out at once | requests / failed |"
echo "|---|---|---|---|---|---|---|"
printf '%s\n' "${results[@]}"
