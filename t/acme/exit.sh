#!/bin/bash
#
# t/acme/exit.sh: a CertService child stops its threads before it exits.
#
# CI once saw a CertService child abort at its exit ("malloc_consolidate():
# unaligned fastbin chunk detected", AH00052) while the test stopped it.
# An httpd 2.4 child ends with exit() and never joins mod_watchdog's
# threads; exit() runs OpenSSL's atexit cleanup while those threads may
# still tear down their ACME clients and webhook transport (libcurl
# connections, OpenSSL keys and contexts).  The window is milliseconds.
#
# Here t/lib/exit_linger.c, LD_PRELOADed into httpd, lingers after the
# child's exit handlers and reports every OpenSSL or libcurl object freed
# then.  Against pebble (every validation valid), a CertService with three
# ACME workers and the notification worker (webhook and command) is
# started and stopped ROUNDS times, each time while the workers order
# certificates and the outbox is delivered, and shows that:
#
#   1. no child freed an OpenSSL or libcurl object after OpenSSL's
#      cleanup (no "exit_linger:" line), and no child died of a signal
#   2. the workers did work in the rounds (certificates issued, events
#      delivered), so that the stops came while they were busy
#   3. a stop while the notification command hangs kills it at once (the
#      run is a failed attempt, retried later) instead of holding the
#      child's exit for 10 s (CS00035)
#
# Environment:
#   HTTPD, APXS         the httpd binary / apxs to find it and its modules
#   ROUNDS              start/stop rounds [8]
#   EXIT_LINGER_MS      how long a child lingers after its exit handlers
#                       [400]
#   CC                  the C compiler for the library [cc]
#   CERTSUITE_KEEP=1    keep the temporary directory
#
# httpd runs with glibc's malloc checks when libc_malloc_debug.so is there
# (MALLOC_CHECK_=3, MALLOC_PERTURB_=165, no tcache); cores in $tmp/cores.
#
set -u
export LC_ALL=C

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
ROUNDS=${ROUNDS:-8}
LINGER=${EXIT_LINGER_MS:-400}
. "$top/t/lib/certsuite.sh"
tap_init

cs_need curl jq openssl python3 sqlite3 pebble pebble-challtestsrv "${CC:-cc}" \
    -- dbd watchdog || bail "$need_why"
cs_modules || bail "the modules are not built (make)"

cs_tmpdir acme-exit || bail "mktemp failed"
cs_layout pebble notify || bail "cannot make the directories in $tmp"
[ -z "$run_user" ] || chmod 777 "$tmp/notify"

pids=()
on_cleanup() {
    stop_httpd "$csdir"
    stop_pids "${pids[@]}"
}

# --- The library, the PKI, the CA ---------------------------------------------

"${CC:-cc}" -shared -fPIC -O2 -o "$tmp/exit_linger.so" \
    "$top/t/lib/exit_linger.c" -ldl 2>"$tmp/cc.log" \
    || bail "cannot build exit_linger.so: $(cat "$tmp/cc.log")"
chmod 755 "$tmp/exit_linger.so"

{
    "$top/t/certservice/make-pki.sh" "$pki" \
    && "$top/t/certservice/make-acme-pki.sh" "$pki" exit
} >"$tmp/pki.log" 2>&1 || bail "cannot make the test PKI: $(tail -5 "$tmp/pki.log")"
chmod 755 "$pki"

dns_port=$(pick_port)
cts_port=$(pick_port)
pebble_port=$(pick_port)
pebble_mgmt=$(pick_port)
nr_port=$(pick_port)
cs_port=$(pick_port)

start_challtestsrv "$dns_port" "$cts_port" "$tmp/challtestsrv.log"
pids+=($!)
wait_port "$cts_port" || bail "pebble-challtestsrv did not start"
pebble_conf "$pebble_port" "$pebble_mgmt" "$(pick_port)" "$(pick_port)" \
    "$pki" >"$tmp/pebble/config.json"
PEBBLE_VA_NOSLEEP=1 PEBBLE_VA_ALWAYS_VALID=1 PEBBLE_WFE_NONCEREJECT=0 \
    pebble -config "$tmp/pebble/config.json" \
    -dnsserver "127.0.0.1:$dns_port" >"$tmp/pebble/pebble.log" 2>&1 &
pids+=($!)
wait_port "$pebble_port" || bail "pebble did not start: $(tail -5 "$tmp/pebble/pebble.log")"

head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$tmp/notify.secret"
python3 "$here/notify-receiver.py" "$nr_port" "$tmp/notify.secret" \
    "$tmp/notify/webhook.jsonl" 0 >>"$tmp/notify-receiver.log" 2>&1 &
pids+=($!)
wait_port "$nr_port" || bail "notify-receiver.py did not start: $(tail -5 "$tmp/notify-receiver.log")"
cat >"$tmp/notify-cmd.sh" <<CMD
#!/bin/sh
cat >/dev/null
echo "\$1 \$2" >>"$tmp/notify/cmd.log"
CMD
chmod 755 "$tmp/notify-cmd.sh"

mkdir -p "$tmp/cores" && chmod 1777 "$tmp/cores"
ulimit -c unlimited 2>/dev/null
write_cs_conf "$csdir" "$cs_port" log="warn certservice:info" \
    server="CoreDumpDirectory $tmp/cores" \
    acme="https://127.0.0.1:$pebble_port/dir" \
    vhost="CertServiceACMEContact mailto:exit@example.org
CertServiceACMEWorkers 3
CertServiceACMEBackoff 1 2
CertServiceNotifyURL http://127.0.0.1:$nr_port/hook
CertServiceNotifySecret \"$tmp/notify.secret\"
CertServiceNotifyCmd \"$tmp/notify-cmd.sh\"" \
    || bail "cannot write the configuration"
ok "pebble, the webhook receiver and the configuration ready (rounds: $ROUNDS, linger: $LINGER ms)"

# --- Rounds ---------------------------------------------------------------------

# start_cs: CertService with the library, and glibc's malloc checks when
# it has them (a double free then aborts the child: seen once in 10 rounds
# when a thread freed its OpenSSL thread state during exit()); cores in
# $tmp/cores.
mdebug=$(ls /usr/lib/*-linux-gnu/libc_malloc_debug.so.0 \
             /lib64/libc_malloc_debug.so.0 2>/dev/null | head -1)
start_cs() {
    EXIT_LINGER_MS=$LINGER LD_PRELOAD="$tmp/exit_linger.so${mdebug:+:$mdebug}" \
    MALLOC_CHECK_=3 MALLOC_PERTURB_=165 GLIBC_TUNABLES=glibc.malloc.tcache_count=0 \
        start_httpd "$csdir" "$cs_port"
}

issued() { # the domains with a certificate
    sqlite3 "$csdir/db/cs.db" \
        "SELECT COUNT(*) FROM cs_domains WHERE serial IS NOT NULL" \
        2>/dev/null || echo 0
}
ndom=0
for round in $(seq 1 "$ROUNDS"); do
    start_cs || bail "CertService did not start (round $round): $(tail -5 "$csdir/start.log" "$csdir/logs/error_log")"
    # New domains each round: the workers order while the stop comes.
    for i in 1 2 3 4 5 6; do
        ndom=$((ndom + 1))
        cs_req admin "$cs_port" PUT "/v1/domains/x$ndom.exit.test" '{}'
    done
    # Stop at a different moment of the work each round.
    sleep "$(( (round % 4) + 1 )).$(( round * 3 % 10 ))"
    stop_httpd "$csdir"
    # The old children linger: wait until every one is gone.
    for i in $(seq 1 50); do
        pgrep -f "$csdir/httpd.conf" >/dev/null || break
        sleep 0.1
    done
done

late=$(grep -h 'exit_linger:' "$csdir/logs/error_log")
is "$([ -z "$late" ] || sed 's/ (pid.*//' <<<"$late" | sort | uniq -c)" "" \
    "no child freed an OpenSSL or libcurl object after OpenSSL's cleanup"
[ -z "$late" ] || diag "in $(grep -o 'pid [0-9]*' <<<"$late" | sort -u | wc -l) of $ROUNDS rounds' children"
errs=$(grep -h -E '\[(crit|alert|emerg)\]|exit signal|AH0005[12]|Segmentation|malloc|free\(\)' \
    "$csdir/logs/error_log" | head -5)
is "$errs" "" "no child died of a signal, no critical line"
[ -z "$(ls "$tmp/cores")" ] || diag "cores (CERTSUITE_KEEP=1 keeps them): $(ls "$tmp/cores")"

got=$(issued)
sent=$(wc -l <"$tmp/notify/cmd.log" 2>/dev/null || echo 0)
diag "certificates issued: $got of $ndom domains; events run by the command: $sent"
[ "$got" -gt 0 ] && [ "$sent" -gt 0 ]
okif $? "the workers were busy: certificates issued and events delivered"

# --- A stop while the notification command hangs -----------------------------

# The command hangs on its first run for the domain added here: the
# child's exit kills it instead of waiting for it (or giving up after 10 s
# with CS00035), and the row is retried like any failed run.  Only that
# domain's row hangs: rows the stop above left pending are retried first
# at times, and their attempts already count (one once hung here and was
# found with attempts 2).
cat >"$tmp/notify-cmd.sh" <<CMD
#!/bin/sh
cat >/dev/null
if [ "\$2" = hang.exit.test ] && mkdir "$tmp/notify/hung" 2>/dev/null; then
    echo "\$2" >"$tmp/notify/hung/domain"
    sleep 60
fi
echo "\$1 \$2" >>"$tmp/notify/cmd.log"
CMD
: >"$csdir/logs/error_log"
start_cs || bail "CertService did not start: $(tail -5 "$csdir/logs/error_log")"
cs_req admin "$cs_port" PUT /v1/domains/hang.exit.test '{}'
for i in $(seq 1 300); do
    [ -s "$tmp/notify/hung/domain" ] && break
    sleep 0.1
done
[ -s "$tmp/notify/hung/domain" ] || bail "the command did not run: $(tail -5 "$csdir/logs/error_log")"
t0=$(date +%s%N)
stop_httpd "$csdir" 300
ms=$((($(date +%s%N) - t0) / 1000000))
diag "stopped in $ms ms while the command ran"
[ "$ms" -lt 5000 ]
okif $? "a stop does not wait for a hanging notification command (under 5 s)"
is "$(grep -c 'CS00035' "$csdir/logs/error_log")" 0 \
    "no worker thread left busy at the child's exit (no CS00035)"
row=$(sqlite3 "$csdir/db/cs.db" "SELECT state, attempts, last_error FROM cs_notify_events WHERE sink = 'cmd' AND domain = '$(cat "$tmp/notify/hung/domain")'" 2>/dev/null)
diag "its row: $row"
grep -q '^pending|1|.*killed: the server is stopping' <<<"$row"
okif $? "the killed run is a failed attempt, retried later"

echo "# $((SECONDS - T0)) s"
echo "$npass passed, $nfail failed"
[ "$nfail" = 0 ]
