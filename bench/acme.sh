#!/bin/bash
#
# bench/acme.sh: certificates issued per minute by CertService through
# pebble, with real http-01 validation through a proxy's relay.
#
# Starts on 127.0.0.1: pebble-challtestsrv (DNS: every name is 127.0.0.1),
# pebble (validation on, PEBBLE_VA_NOSLEEP=1, nonces refused at pebble's
# default 5%), CertService (mod_certservice with CertServiceACMEDirectory,
# SQLite, no order limit) and a proxy httpd that only relays
# /.well-known/acme-challenge/ to CertService (docs/acme-relay.md).
# For each worker count in $WORKERS, CertService is started afresh on a new
# database, $DOMAINS domains are added at once (PUT /v1/domains/D, 202)
# and the time from the first PUT to the last certificate stored is
# measured.  Each issue is a full order: newOrder, authorization, http-01
# challenge fetched by pebble through the relay, finalize with a CSR of a
# fresh ECDSA P-256 key, polling, chain download, key sealed as CMS,
# bundle stored, change appended.
#
# With CAS containing 2, the same again against two CAs: a second pebble
# (validation on too) in a <CertServiceACMEIssuer second> section, the
# first CA's account budget set to half the domains (CertServiceACMELimit
# D/2 1h), so that the other half spill over to the second CA as its
# budget runs out; the line says how many each CA issued.
#
# Last, the scheduler's throughput with SCHED_N queued domains and no CA
# (bench/sched_bench: the pure earliest-deadline order, then claims in
# that order from a SQLite queue of that size).
#
# Prints one line per CA count and worker count: "N CA(s), workers N: D
# certificates in S s = R per minute", then the scheduler's lines.
#
# Environment [defaults]:
#   DOMAINS     domains per run [60]
#   WORKERS     CertServiceACMEWorkers values to run ["1 2 4"]
#   CAS         CA counts to run ["1 2"]
#   SCHED_N     queued domains for the scheduler [100000]; 0: skip it
#   HTTPD, APXS the httpd binary / apxs to find it and its modules
#   CERTSUITE_KEEP=1  keep the temporary directory
#
set -u
export LC_ALL=C

DOMAINS=${DOMAINS:-60}
WORKERS=${WORKERS:-1 2 4}
CAS=${CAS:-1 2}
SCHED_N=${SCHED_N:-100000}
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
. "$top/t/lib/certsuite.sh"

cs_need curl jq openssl pebble pebble-challtestsrv || die "$need_why"
CS_MODULE=$top/mod_certservice/.libs/mod_certservice.so
[ -f "$CS_MODULE" ] || die "mod_certservice.so not built (make)"

cs_tmpdir acme-bench || die "mktemp failed"
cs_layout pebble || die "cannot make the directories in $tmp"

pids=()
on_cleanup() {
    stop_httpd "$pxdir"
    stop_httpd "$csdir"
    stop_pids "${pids[@]}"
}

"$top/t/certservice/make-pki.sh" "$pki" >"$tmp/pki.log" 2>&1 \
    || die "make-pki.sh failed"
chmod 755 "$pki"
"$top/t/certservice/make-acme-pki.sh" "$pki" bench >"$tmp/pki2.log" 2>&1 \
    || die "cannot make the certificates"

declare -A used
newport() {
    local p
    while :; do
        p=$(pick_port)
        [ -n "${used[$p]:-}" ] || { used[$p]=1; echo "$p"; return; }
    done
}
dns_port=$(newport); cts_port=$(newport); pebble_port=$(newport)
pebble_mgmt=$(newport); tls01=$(newport); http_port=$(newport)
cs_port=$(newport); peb2_port=$(newport); peb2_mgmt=$(newport)
peb2_tls01=$(newport)
for v in dns_port cts_port pebble_port pebble_mgmt tls01 http_port cs_port \
         peb2_port peb2_mgmt peb2_tls01; do
    used[${!v}]=1
done
start_challtestsrv "$dns_port" "$cts_port" "$tmp/challtestsrv.log"
pids+=($!)
pebble_conf "$pebble_port" "$pebble_mgmt" "$http_port" "$tls01" "$pki" \
    >"$tmp/pebble/config.json"
PEBBLE_VA_NOSLEEP=1 PEBBLE_VA_ALWAYS_VALID= pebble -config "$tmp/pebble/config.json" \
    -dnsserver "127.0.0.1:$dns_port" >"$tmp/pebble/pebble.log" 2>&1 &
pids+=($!)
wait_port "$pebble_port" || die "pebble did not start"
case " $CAS " in
*" 2 "*)
    pebble_conf "$peb2_port" "$peb2_mgmt" "$http_port" "$peb2_tls01" "$pki" \
        >"$tmp/pebble/config2.json"
    PEBBLE_VA_NOSLEEP=1 PEBBLE_VA_ALWAYS_VALID= pebble \
        -config "$tmp/pebble/config2.json" -dnsserver "127.0.0.1:$dns_port" \
        >"$tmp/pebble/pebble2.log" 2>&1 &
    pids+=($!)
    wait_port "$peb2_port" || die "the second pebble did not start" ;;
esac

# The relay proxy.
{
    common_conf "$pxdir"
    load proxy_module mod_proxy.so mod_proxy.c
    load proxy_http_module mod_proxy_http.so mod_proxy_http.c
    echo "LogLevel warn"
    acme_relay_vhost "$http_port" "$cs_port" proxy acme-relay.invalid
} >"$pxdir/httpd.conf"
start_httpd "$pxdir" "$http_port" || die "the relay proxy did not start"

write_cs() { # workers cas
    if [ "$2" = 1 ]; then
        write_cs_conf "$csdir" "$cs_port" acme="https://127.0.0.1:$pebble_port/dir" \
            vhost="CertServiceACMEWorkers $1
CertServiceACMELimit 1000000 60
CertServiceACMEBackoff 1 5"
    else
        write_cs_conf "$csdir" "$cs_port" acme="https://127.0.0.1:$pebble_port/dir" \
            vhost="CertServiceACMEWorkers $1
CertServiceACMELimit $((DOMAINS / 2)) 3600
CertServiceACMEBackoff 1 5
<CertServiceACMEIssuer second>
    CertServiceACMEDirectory https://127.0.0.1:$peb2_port/dir
    CertServiceACMECA \"$pki/acme-tls-ca.crt\"
    CertServiceACMELimit 1000000 60
</CertServiceACMEIssuer>"
    fi
}
admin() { # method path
    curl -sS --noproxy '*' --max-time 30 --cacert "$pki/clients-ca.crt" \
        --cert "$pki/admin.crt" --key "$pki/admin.key" -X "$1" \
        "https://127.0.0.1:$cs_port$2"
}

echo "bench/acme.sh: $DOMAINS domains per run, pebble validation on, $(nproc) CPUs"
for cas in $CAS; do
for w in $WORKERS; do
    stop_httpd "$csdir"
    rm -rf "$csdir/db" "$csdir/logs/error_log"
    mkdir -p "$csdir/db"
    [ -n "$run_user" ] && chown "$run_user:$run_group" "$csdir/db"
    write_cs "$w" "$cas"
    start_httpd "$csdir" "$cs_port" || die "CertService did not start"
    admin GET "/v1/domains?limit=1" >/dev/null
    t0=$(date +%s.%N)
    for i in $(seq 1 "$DOMAINS"); do
        admin PUT "/v1/domains/b$i.w$w.c$cas.bench.test" >/dev/null
    done
    t_put=$(date +%s.%N)
    deadline=$(( $(date +%s) + 600 ))
    while :; do
        n=$(grep -c 'CS00019: acme: issued' "$csdir/logs/error_log" 2>/dev/null)
        [ "${n:-0}" -ge "$DOMAINS" ] && break
        [ "$(date +%s)" -lt "$deadline" ] || { echo "workers $w: timeout, $n issued"; continue 2; }
        sleep 0.2
    done
    t1=$(date +%s.%N)
    failed=$(grep -c 'CS00020' "$csdir/logs/error_log" 2>/dev/null)
    per_ca=$(sqlite3 "$csdir/db/cs.db" "SELECT COALESCE(ca, '?') || ' ' ||
        COUNT(*) FROM cs_acme_jobs GROUP BY ca ORDER BY ca" 2>/dev/null \
        | paste -sd, -)
    awk -v w="$w" -v d="$DOMAINS" -v t0="$t0" -v tp="$t_put" -v t1="$t1" \
        -v f="${failed:-0}" -v c="$cas" -v pc="$per_ca" 'BEGIN {
        s = t1 - t0
        printf "%d CA(s), workers %d: %d certificates in %.1f s = %.1f" \
               " per minute (PUTs took %.1f s; %d failed attempts retried;" \
               " by CA: %s)\n", c, w, d, s, d * 60 / s, tp - t0, f, pc }'
done
done

if [ "$SCHED_N" -gt 0 ]; then
    (cd "$top" && make -s bench/sched_bench >/dev/null) \
        || die "cannot build bench/sched_bench"
    echo "scheduler, no CA ($SCHED_N queued domains):"
    "$top/bench/sched_bench" "$SCHED_N" 2000 "$tmp/sched.db"
fi
