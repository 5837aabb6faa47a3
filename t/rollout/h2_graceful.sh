#!/bin/bash
#
# t/rollout/h2_graceful.sh: HTTP/2 clients through HAProxy while the
# proxies restart gracefully, one after the other, in a loop: the open
# point of docs/tls.md ("Error in the HTTP2 framing layer" once in 1,936
# requests of make check-rollout).  A focused reproduction, not a suite
# of make check: it prints what it counted and keeps what explains each
# failure.
#
# The pool of t/lib/pool.sh (vhost mode, CertService, backend, three
# proxies, HAProxy in TCP mode with PROXY v2), H2G_DOMAINS domains.  Then
# for H2G_SECONDS: H2G_WORKERS clients, each running curl (H2G_HTTP,
# --http2 by default) with H2G_REQS URLs of one domain on one kept-alive
# connection at H2G_RATE (as the rollout suite's kept-alive load does),
# with -v --trace-time into a log per batch (kept when the batch had a
# failure); and a loop that restarts proxy 1, 2, 3, 1, ... gracefully
# (httpd -k graceful) every H2G_EVERY seconds.
#
# Output: requests, failures, failures per 1,000, curl's error messages
# by count, and for every failed request what curl's own log says about
# it: the stream id it was sent on, and the GOAWAY (error code,
# last_stream) the connection received.  "refused by GOAWAY" means the
# request's stream id was above the GOAWAY's last_stream: the server
# tells the client it did not process it, and the client may send it
# again on a new connection (RFC 9113, 6.8 and 8.7).
#
#   t/rollout/h2_graceful.sh                      # h2, 120 s
#   H2G_HTTP=--http1.1 t/rollout/h2_graceful.sh   # the same for HTTP/1.1
#   H2G_CLIENT=h2load t/rollout/h2_graceful.sh    # nghttp2's h2load
#   H2G_CLIENT=rollout t/rollout/h2_graceful.sh   # the rollout suite's
#       load (t/lib/rollout.sh: a request a GOAWAY refused is sent again)
#
# Knobs: H2G_SECONDS [120], H2G_EVERY [2], H2G_WORKERS [4], H2G_REQS
# [20], H2G_RATE [10/s], H2G_DOMAINS [4], H2G_LOGLEVEL (the proxies'
# LogLevel), CERTSUITE_KEEP=1 keeps the directory.
# Root or not; ports from pool_pick_base.  It runs a pool like make
# check-rollout: run it under `flock /tmp/e2e-rollout.lock` on a shared
# machine.  About 4 minutes with the defaults (pool start, 120 s of load).
set -u
export LC_ALL=C

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../lib/rollout.sh
. "$here/../lib/rollout.sh"

H2G_SECONDS=${H2G_SECONDS:-120}
H2G_EVERY=${H2G_EVERY:-2}
H2G_WORKERS=${H2G_WORKERS:-4}
H2G_REQS=${H2G_REQS:-20}
H2G_RATE=${H2G_RATE:-10/s}
H2G_DOMAINS=${H2G_DOMAINS:-4}
H2G_HTTP=${H2G_HTTP:---http2}
H2G_CLIENT=${H2G_CLIENT:-curl}

tap_init
cs_tmpdir h2-graceful || bail "mktemp failed"
chmod 755 "$tmp"
work=$tmp/work
mkdir -p "$work/load"
on_cleanup() {
    [ -z "${restarter:-}" ] || kill "$restarter" 2>/dev/null
    rt_load_stop
    pool_stop_all
}
trap 'cs_cleanup; exit' EXIT INT TERM

base=$(pool_pick_base) || bail "no free ports"
POOL_DRAIN_TIME=1
# H2G_LOGLEVEL: the proxies' LogLevel, e.g. "warn http2:debug" for
# mod_http2's "sent GOAWAY" lines (AH03069)
POOL_LOGLEVEL=${H2G_LOGLEVEL:-${POOL_LOGLEVEL:-}}
[ -n "$POOL_LOGLEVEL" ] || unset POOL_LOGLEVEL
rt_start_pool "$tmp/pool" "$base" >"$work/start.log" 2>&1 \
    || { cat "$work/start.log"; bail "the pool did not start"; }
for i in $(seq 1 "$H2G_DOMAINS"); do
    printf 'h2g-%02d.rollout.test\n' "$i"
done >"$work/names"
: >"$work/domains"
rt_issue "$work/domains" $(cat "$work/names") || bail "issuing failed"
rt_wait_served "$work/domains" 120 1 2 3 || bail "not served in 120 s"
echo "# pool on 127.0.0.1:$base, $H2G_DOMAINS domains served by the 3 proxies"

# --- load ---------------------------------------------------------------------

# _h2g_curl ID: one client: batches of H2G_REQS requests on one connection
_h2g_curl() {
    local id=$1 i=0 d args k end=$((SECONDS + H2G_SECONDS)) v
    mapfile -t doms <"$work/names"
    while [ $SECONDS -lt $end ]; do
        d=${doms[$(((id + i) % ${#doms[@]}))]}
        args=(--resolve "$d:$POOL_LB_PORT:127.0.0.1" --rate "$H2G_RATE")
        for ((k = 0; k < H2G_REQS; k++)); do
            args+=(--url "https://$d:$POOL_LB_PORT/ka?w=$id&i=$i&k=$k")
        done
        v=$work/load/v$id-$i.log
        echo "T $(date +%s)" >>"$work/load/w$id.res"
        curl -s -v --trace-time "$H2G_HTTP" --noproxy '*' \
            --cacert "$POOL_PKI/ca.crt" --max-time 30 --connect-timeout 10 \
            -o /dev/null \
            -w '%{stderr}R %{http_code} %{num_connects} %{http_version} %{url_effective} %{errormsg}\n' \
            "${args[@]}" >/dev/null 2>"$v"
        grep '^R ' "$v" >>"$work/load/w$id.res"
        # curl's own retries (HTTP/1.1: a reused connection closed under
        # the request; h2: REFUSED_STREAM it handled)
        grep -c 'retrying a fresh connect' "$v" >>"$work/load/w$id.retries"
        grep -q '^R 200 ' "$v" && ! grep '^R ' "$v" | grep -qv '^R 200 ' \
            && rm -f "$v"
        i=$((i + 1))
    done
}

# _h2g_h2load ID: h2load, H2G_REQS requests on one connection per run
_h2g_h2load() {
    local id=$1 i=0 d end=$((SECONDS + H2G_SECONDS)) out
    mapfile -t doms <"$work/names"
    while [ $SECONDS -lt $end ]; do
        d=${doms[$(((id + i) % ${#doms[@]}))]}
        out=$work/load/h$id-$i.log
        # --connect-to: the URL's host is the SNI and :authority
        h2load -n "$H2G_REQS" -c 1 -m 1 --rps="${H2G_RATE%/s}" \
            --connect-to="127.0.0.1:$POOL_LB_PORT" \
            "https://$d:$POOL_LB_PORT/ka?w=$id&i=$i" >"$out" 2>&1
        awk -v id="$id" '/^requests:/ { print "H", $2, $8, $10, $12 }' \
            "$out" >>"$work/load/w$id.res"
        i=$((i + 1))
    done
}

restarts_done=0
_h2g_restarter() {
    local n=1 end=$((SECONDS + H2G_SECONDS))
    while [ $SECONDS -lt $end ]; do
        sleep "$H2G_EVERY"
        "$POOL_HTTPD" -f "$POOL_DIR/proxy$n/httpd.conf" -k graceful \
            >/dev/null 2>&1
        echo "$(date +%s.%N) proxy$n" >>"$work/restarts"
        n=$((n % 3 + 1))
    done
}

echo "# load: $H2G_WORKERS x $H2G_CLIENT $H2G_HTTP, $H2G_REQS requests a connection at $H2G_RATE, for ${H2G_SECONDS}s; a graceful restart every ${H2G_EVERY}s"
_h2g_restarter &
restarter=$!
if [ "$H2G_CLIENT" = rollout ]; then
    # The rollout suite's own kept-alive load (t/lib/rollout.sh), which
    # sends a request a GOAWAY refused once more on a new connection.
    RT_LOAD_NEW=0 RT_LOAD_KA=$H2G_WORKERS RT_LOAD_KA_REQS=$H2G_REQS
    RT_LOAD_KA_RATE=$H2G_RATE RT_LOAD_PAUSE=0 RT_LOAD_SECONDS=$H2G_SECONDS
    RT_LOAD_HTTP=$H2G_HTTP
    rt_load_start "$work/rload" "$work/domains"
    sleep "$H2G_SECONDS"
    rt_load_stop
    wait "$restarter" 2>/dev/null
    restarter=
    c=($(rt_load_counts))
    echo "requests ${c[0]}, failed ${c[1]}; $(rt_load_refused_text); $(wc -l <"$work/restarts") graceful restarts"
    grep -h '^G ' "$work"/rload/*.log | head -n 10 | sed 's/^/#   /'
    rt_load_failures | head -n 10 | sed 's/^/#   failed: /'
    rt_load_backend_twice | head -n 10 | sed 's/^/#   reached the backend twice: /'
    exit 0
fi
pids=()
for w in $(seq 1 "$H2G_WORKERS"); do
    if [ "$H2G_CLIENT" = h2load ]; then
        _h2g_h2load "$w" &
    else
        _h2g_curl "$w" &
    fi
    pids+=($!)
done
wait "${pids[@]}"
wait "$restarter" 2>/dev/null
restarter=

# --- report -------------------------------------------------------------------

nrestarts=$(wc -l <"$work/restarts" 2>/dev/null || echo 0)
if [ "$H2G_CLIENT" = h2load ]; then
    cat "$work"/load/w*.res | awk -v r="$nrestarts" '
        $1 == "H" { t += $2; ok += $3; f += $4; e += $5 }
        END { printf "requests %d, succeeded %d, failed %d, errored %d: %.2f per 1,000; %d graceful restarts\n",
                     t, ok, f, e, t ? 1000 * (f + e) / t : 0, r }'
    exit 0
fi
cat "$work"/load/w*.res | awk -v r="$nrestarts" '
    $1 == "R" { n++; if ($2 != "200") f++ }
    END { printf "requests %d, failed %d: %.2f per 1,000; %d graceful restarts\n",
                 n, f, n ? 1000 * f / n : 0, r }'
echo "# requests curl itself sent again on a new connection: $(cat "$work"/load/w*.retries | awk '{ s += $1 } END { print s + 0 }')"
echo "# curl's errors, by count:"
cat "$work"/load/w*.res | awk '$1 == "R" && $2 != "200" {
    $1 = $2 = $3 = $4 = $5 = ""; sub(/^ +/, ""); print }' \
    | sort | uniq -c | sort -rn | sed 's/^/#   /'

# Each failed request, from its batch's verbose log: the stream it went
# on, the GOAWAY its connection got before the failure.
echo "# failed requests (stream id sent on; GOAWAY received):"
refused=0 other=0
for v in "$work"/load/v*.log; do
    [ -f "$v" ] || continue
    awk '
        /Using Stream ID: / { for (i = 1; i <= NF; i++) if ($i == "ID:") sid = $(i + 1) + 0 }
        /GOAWAY, error=/ { g = $0; sub(/.*GOAWAY, /, "", g)
                           split(g, a, /[=,]/); gerr = a[2] + 0; glast = a[4] + 0; have = 1 }
        /^R / && $2 != "200" {
            kind = (have && sid > glast) ? "refused-by-GOAWAY" : "other"
            printf "%s stream=%d goaway=%s %s\n", kind, sid,
                   have ? ("err " gerr " last_stream " glast) : "none", $0
        }
        /^R / { have = 0; sid = 0 }
    ' "$v"
done >"$work/failures"
refused=$(grep -c '^refused-by-GOAWAY' "$work/failures")
other=$(grep -c '^other' "$work/failures")
sed 's/^/#   /' "$work/failures" | head -n 20
echo "# refused by a GOAWAY (stream id above its last_stream): $refused; other: $other"
echo "# logs: $work/load (v*.log: curl -v of each batch with a failure)"
[ "${CERTSUITE_KEEP:-}" = 1 ] && echo "# kept: $tmp"
exit 0
