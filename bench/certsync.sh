#!/bin/bash
#
# bench/certsync.sh: mod_certsync's initial and incremental sync from a
# local CertService.
#
# One CertService httpd (mod_certservice, mod_dbd with SQLite, mod_ssl with
# client certificates, local CA) and one proxy httpd (mod_certsync with
# CertSyncInterval 1 0, CertSyncDrainTime 0 and CertSyncProbe on its own
# listener; mod_macro + mod_macro_gen expanding a TLS virtual host per
# manifest entry; mod_ssl), both on 127.0.0.1, modules from the build tree.
#
#   issue      $DOMAINS domains issued through the API (PUT /v1/domains/D
#              as admin; each a real issuance: ECDSA P-256 key pair,
#              certificate from the local CA, key sealed as CMS), over
#              $ISSUE_WORKERS kept-alive connections, before the proxy
#              starts.  -> issued/s
#   initial    the proxy starts with an empty store and syncs all of them:
#              feed, POST /v1/bundles in batches of 100, envelope opened,
#              bundle verified, written durably, manifest, configuration
#              test, graceful restart with $DOMAINS TLS virtual hosts,
#              probe.  -> bundles/s (the sync daemon's start, CY00003, to
#              sync done, CY00005),
#              time to the first domain in the manifest, time to the first
#              domain served (TLS handshake), total time (proxy start to
#              "rollout complete", CY00014), and the phases
#   incremental  $INCR domains re-issued through the API at once (one
#              connection); latency from the first and from the last
#              change to the last one being served (its new serial in a
#              TLS handshake with SNI), and to every one being served
#
# Usage: bench/certsync.sh             (build first: make)
#
# Environment [defaults]:
#   DOMAINS        domains of the initial sync [10000]
#   INCR           changes of the incremental sync [100]
#   ISSUE_WORKERS  parallel issuing connections [2; more gain nothing on
#                  2 CPUs: SQLite commits one writer at a time]
#   ACTIVATION     vhost or dynamic [vhost]; dynamic: no restart, the
#                  initial sync ends at "sync done" (CY00005) and every
#                  name is then served from the store; INCR=0 skips the
#                  incremental part
#   HTTPD, APXS    the httpd binary / apxs to find it and its modules
#   CERTSUITE_KEEP=1  keep the temporary directory
#   PX_LOG=LEVELS     the proxy's LogLevel [warn certsync:info]; with
#                  certsync:debug the sync daemon logs each feed page's
#                  time and what it waited for
#
# Works as a normal user and as root (httpd's children then run as
# nobody).  Talks only to 127.0.0.1; everything is stopped on exit.
#
set -u
export LC_ALL=C

DOMAINS=${DOMAINS:-10000}
INCR=${INCR:-100}
ISSUE_WORKERS=${ISSUE_WORKERS:-2}
ACTIVATION=${ACTIVATION:-vhost}
PX_LOG=${PX_LOG:-warn certsync:info}
case $ACTIVATION in vhost | dynamic) ;; *) echo "ACTIVATION=vhost|dynamic" >&2; exit 2 ;; esac

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
. "$top/t/lib/certsuite.sh"

say() { echo "$*"; }
now() { date +%s.%N; }
secs() { # from to -> seconds, 2 decimals
    awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'
}
rate() { # count from to -> per second
    awk -v n="$1" -v a="$2" -v b="$3" \
        'BEGIN { if (b > a) printf "%.0f", n / (b - a); else print "-" }'
}

cs_need curl jq openssl || die "$need_why"
cs_modules || die "the modules are not built (make)"

cs_tmpdir certsync-bench || die "mktemp"
cs_layout || die "cannot make the directories in $tmp"

bg_pids=()
on_cleanup() {
    stop_pids "${bg_pids[@]}"
    stop_httpd "$pxdir" 300
    stop_httpd "$csdir" 300
}

"$top/t/certservice/make-pki.sh" "$pki" >"$tmp/pki.log" 2>&1 \
    || { cat "$tmp/pki.log"; die "make-pki.sh failed"; }
chmod 755 "$pki"
fallback_cert "$pki" fallback.bench.invalid \
    || die "cannot make the fallback certificate"

# write_cs / write_px: the configurations of CertService and the proxy on
# ports picked now (for start_httpd_retry)
write_cs() {
    cs_port=$(pick_port)
    listen_ports=$cs_port
    write_cs_conf "$csdir" "$cs_port" log=warn timeout=60
}
write_px() {
    px_port=$(pick_port)
    st_port=$(pick_port)
    while [ "$st_port" = "$px_port" ]; do st_port=$(pick_port); done
    listen_ports="$px_port $st_port"
    write_px_conf "$pxdir" "$px_port" "$st_port" "$cs_port" bench timeout=60 \
        restart=600 activation="$ACTIVATION" log="$PX_LOG"
}
# cpu DIR: CPU seconds (user + system) of the httpd of DIR/httpd.pid and
# its processes (the sync daemon, the workers), with its children that
# exited; CertService's or the proxy's share of a cold sync
cpu() {
    local parent p
    parent=$(cat "$1/httpd.pid" 2>/dev/null) || { echo 0; return; }
    for p in "$parent" $(pgrep -P "$parent"); do
        cut -d' ' -f14-17 "/proc/$p/stat" 2>/dev/null
    done | awk -v hz="$(getconf CLK_TCK)" \
        '{ s += $1 + $2 + $3 + $4 } END { printf "%.2f", s / hz }'
}
# start NAME (cs or px): started on free ports, 300 x 0.1 s to start
start() {
    start_tries=300 start_httpd_retry "$tmp/$1" "write_$1"
}
served() { # domain: the serial its handshake presents (lower case)
    local s
    s=$(timeout 20 openssl s_client -connect "127.0.0.1:$px_port" \
            -servername "$1" </dev/null 2>/dev/null \
        | openssl x509 -noout -serial 2>/dev/null)
    s=$(echo "${s#serial=}" | tr A-F a-f | sed 's/^0*//')
    echo "${s:-none}"
}
norm() { echo "$1" | tr A-F a-f | sed 's/^0*//'; }
status() {
    curl -sS --noproxy '*' --max-time 10 \
        "http://127.0.0.1:$st_port/certsync-status" 2>/dev/null
}
pxlog=$pxdir/logs/error_log
log_time() { # line of the error log -> epoch seconds
    date -d "$(sed -n 's/^\[[A-Za-z]* \([^]]*\)\].*/\1/p' <<<"$1")" +%s.%N
}
# The time of the first line matching a pattern after line N of the log.
log_first() { # pattern [after-line]
    local l
    l=$(tail -n +"$((${2:-0} + 1))" "$pxlog" | grep -m1 -- "$1")
    [ -n "$l" ] && log_time "$l"
}
log_last() { # pattern [after-line]
    local l
    l=$(tail -n +"$((${2:-0} + 1))" "$pxlog" | grep -- "$1" | tail -1)
    [ -n "$l" ] && log_time "$l"
}

# issue FILE: PUT every domain listed, over $ISSUE_WORKERS connections;
# the answers (JSON, each followed by its status code) in FILE.raw
issue() {
    local list=$1 w
    rm -f "$list".part.*
    split -n "r/$ISSUE_WORKERS" -d "$list" "$list.part."
    for w in "$list".part.*; do
        awk -v port="$cs_port" '{
            printf "url = \"https://127.0.0.1:%s/v1/domains/%s\"\n", port, $1
            print "request = \"PUT\""
            print "write-out = \"%{http_code} \""
        }' "$w" >"$w.cfg"
        curl -sS --noproxy '*' --max-time 3600 \
            --cacert "$pki/clients-ca.crt" --cert "$pki/admin.crt" \
            --key "$pki/admin.key" -K "$w.cfg" >"$w.out" 2>"$w.err" &
    done
    wait
    # The answers, each '{"domain":...,"serial":...}' and its status code.
    cat "$list".part.*.out >"$list.raw"
}
issued_count() { # raw file: answers with a serial
    grep -o '"serial":"[0-9a-f]*"' "$1" | wc -l
}

say "certsync bench: $DOMAINS domains, $INCR changes; $(nproc) CPUs," \
    "load $(cut -d' ' -f1-3 /proc/loadavg); $("$HTTPD" -v | head -1 \
    | sed 's/Server version: //'), $(openssl version | cut -d' ' -f1-2)"

start cs || die "CertService did not start"
curl -sS --noproxy '*' --cacert "$pki/clients-ca.crt" --cert "$pki/admin.crt" \
    --key "$pki/admin.key" "https://127.0.0.1:$cs_port/v1/domains?limit=1" \
    >/dev/null || die "CertService does not answer"

# --- Issue ---------------------------------------------------------------------

seq -f "s%.0f.bench.test" 1 "$DOMAINS" >"$tmp/work/domains"
t1=$(now)
issue "$tmp/work/domains"
t2=$(now)
n=$(issued_count "$tmp/work/domains.raw")
[ "$n" = "$DOMAINS" ] || die "only $n of $DOMAINS issued: $(head -c 300 \
    "$tmp"/work/domains.part.*.err)"
say "issue:       $DOMAINS domains in $(secs "$t1" "$t2") s:" \
    "$(rate "$DOMAINS" "$t1" "$t2") issued/s ($ISSUE_WORKERS connection(s))"

# --- Initial sync ----------------------------------------------------------------

cs_cpu0=$(cpu "$csdir")
t0=$(now)
start px || die "the proxy did not start"
t_started=$(now)
t_manifest=
first=
cpu_done=
# The wait forks nothing while the proxy syncs: the log's new lines are
# read from a descriptor kept open, the clock is bash's and the pause a
# read with a timeout.  It used to run date, three greps over the whole
# log and sleep ten times a second: 10 to 14 % of the two CPUs
# (perf record -a), taken from the sync daemon it measures.
[ -r "$pxlog" ] || die "no proxy log: $pxlog"
exec {logfd}<"$pxlog" {pausefd}<> <(:)
partial=
ended=
deadline=$((EPOCHSECONDS + 3600))
while [ -z "$ended" ] && ((EPOCHSECONDS < deadline)); do
    if [ -z "$t_manifest" ] && [ -s "$store/manifest" ]; then
        while IFS=' ' read -r first _; do
            case $first in '#'* | '') first= ;; *) break ;; esac
        done <"$store/manifest"
        [ -n "$first" ] && t_manifest=$EPOCHREALTIME
    fi
    while true; do
        IFS= read -r -u "$logfd" line || { partial+=$line; break; }
        line=$partial$line partial=
        case $line in
        *CY00005*)
            # CPU at the end of the sync (before vhost mode's restart)
            if [ -z "$cpu_done" ]; then
                cpu_done=1 px_cpu=$(cpu "$pxdir") cs_cpu1=$(cpu "$csdir")
                [ "$ACTIVATION" = dynamic ] && ended=1
            fi ;;
        *CY00014*) ended=1; break ;;
        *CY0001[5-7]*) die "rollout failed: $line" ;;
        esac
    done
    [ -n "$ended" ] || read -r -t 0.1 -u "$pausefd"
done
exec {logfd}<&- {pausefd}<&-
if [ "$ACTIVATION" = dynamic ]; then
    t_done=$(log_first CY00005)
else
    t_done=$(log_first CY00014)
fi
[ -n "$t_done" ] || die "no rollout complete within an hour"
t_first_served=$(now)
[ -n "$first" ] || first=$(grep -m1 -v '^#' "$store/manifest" | cut -d' ' -f1)
want_first=$(norm "$(grep -o "\"domain\":\"$first\"[^}]*" \
    "$tmp/work/domains.raw" | sed 's/.*"serial":"\([0-9a-f]*\)".*/\1/' \
    | tail -1)")
got_first=$(served "$first")
[ "$got_first" = "$want_first" ] \
    || die "first domain $first serves $got_first, want $want_first"
last=$(tail -1 "$store/manifest" | cut -d' ' -f1)
want_last=$(norm "$(grep -o "\"domain\":\"$last\"[^}]*" \
    "$tmp/work/domains.raw" | sed 's/.*"serial":"\([0-9a-f]*\)".*/\1/' \
    | tail -1)")
[ "$(served "$last")" = "$want_last" ] || die "last domain $last not served"
entries=$(grep -vc '^#' "$store/manifest")
[ "$entries" = "$DOMAINS" ] || die "the manifest lists $entries of $DOMAINS"
if [ "$ACTIVATION" = dynamic ]; then
    # SAMPLE names spread over the manifest, each with its serial (a
    # handshake each: all of them would take longer than the sync)
    sample=${SAMPLE:-50}
    bad=0
    while read -r d; do
        w=$(norm "$(grep -o "\"domain\":\"$d\"[^}]*" \
            "$tmp/work/domains.raw" | sed 's/.*"serial":"\([0-9a-f]*\)".*/\1/' \
            | tail -1)")
        [ "$(served "$d")" = "$w" ] || bad=$((bad + 1))
    done < <(grep -v '^#' "$store/manifest" | cut -d' ' -f1 \
        | awk -v n="$DOMAINS" -v k="$sample" 'NR % int(n / k + 1) == 0')
    t_sample=$(now)
    [ "$bad" = 0 ] || die "dynamic: $bad of the sample not served"
fi

t_synced=$(log_first 'CY00005')
t_rollout=$(log_first 'CY00006')
t_sigusr1=$(log_first 'AH00493')
sig_line=$(grep -n -m1 'AH00493' "$pxlog" | cut -d: -f1)
t_resumed=$(log_first 'AH00489' "$sig_line")
ninst=$(grep -c 'CY00001: installed' "$pxlog")
parent=$(cat "$pxdir/httpd.pid")
rss_parent=$(ps -o rss= -p "$parent" | tr -d ' ')
rss_child=$(ps -o rss= --ppid "$parent" | sort -n | tail -1 | tr -d ' ')
store_mb=$(du -sm "$store" | cut -f1)

say "initial:     proxy started in $(secs "$t0" "$t_started") s (empty store)"
# The rate: every bundle, from the sync daemon's start (CY00003) to the
# cycle's end (CY00005: data, links, manifest and cursor durable).  First
# to last "installed" line is no measure: installs are logged when their
# feed page's commit is joined, at the end of the next page (csy_sync.c),
# so it left the first two pages' time out (5,000 bundles: 2,425/s from
# the log lines where the daemon made 1,370/s).
t_daemon=$(log_first 'CY00003')
say "  bundles:   $ninst installed; $DOMAINS from the sync daemon's start" \
    "(CY00003) to sync done (CY00005) in $(secs "$t_daemon" "$t_synced") s:" \
    "$(rate "$DOMAINS" "$t_daemon" "$t_synced") bundles/s (feed, fetch," \
    "open, verify, durable write, manifest, cursor)"
say "  bundles:   $DOMAINS from the proxy's start to sync done (CY00005) in" \
    "$(secs "$t0" "$t_synced") s: $(rate "$DOMAINS" "$t0" "$t_synced")" \
    "bundles/s"
say "  CPU during the sync (proxy start to CY00005): proxy $px_cpu s" \
    "(its sync daemon), CertService $(awk -v a="$cs_cpu0" -v b="$cs_cpu1" \
    'BEGIN { printf "%.2f", b - a }') s: $(awk -v p="$px_cpu" \
    -v a="$cs_cpu0" -v b="$cs_cpu1" -v n="$DOMAINS" 'BEGIN {
        c = (p + b - a) / n; printf "%.3f ms a bundle, %.0f bundles/s on 2 idle CPUs", 1000 * c, 2 / c }')"
say "  first domain in the manifest ($first): $(secs "$t0" "$t_manifest") s" \
    "after the proxy's start"
say "  sync done (CY00005):            $(secs "$t0" "$t_synced") s"
if [ "$ACTIVATION" = dynamic ]; then
    say "  dynamic: every name in the manifest at CY00005; first, last and" \
        "${sample} spread over the manifest served with their serials, checked" \
        "by $(secs "$t0" "$t_sample") s after the proxy's start"
    say "  memory:    parent RSS $((rss_parent / 1024)) MB, largest child" \
        "$((${rss_child:-0} / 1024)) MB; store $store_mb MB"
    [ "$INCR" -gt 0 ] || exit 0
fi
say "  configtest + lease (CY00006):   $(secs "$t0" "$t_rollout") s" \
    "($(secs "$t_synced" "$t_rollout") s)"
say "  graceful restart, $DOMAINS TLS vhosts: SIGUSR1 at $(secs "$t0" \
    "$t_sigusr1") s, serving at $(secs "$t0" "$t_resumed") s" \
    "($(secs "$t_sigusr1" "$t_resumed") s)"
say "  rollout complete (probe passed, CY00014): $(secs "$t0" "$t_done") s"
say "  first domain served (handshake): by $(secs "$t0" "$t_first_served") s" \
    "(needs the restart)"
say "  total:     $(secs "$t0" "$t_done") s for $DOMAINS domains" \
    "($(rate "$DOMAINS" "$t0" "$t_done") domains/s end to end)"
say "  memory:    parent RSS $((rss_parent / 1024)) MB, largest child" \
    "$((${rss_child:-0} / 1024)) MB; store $store_mb MB"

# --- Incremental sync ------------------------------------------------------------

[ "$INCR" -gt 0 ] || exit 0

sleep 2
lines0=$(wc -l <"$pxlog")
step=$((DOMAINS / INCR))
[ "$step" -ge 1 ] || step=1
awk -v s="$step" -v n="$INCR" 'NR % s == 0 && c < n { print; c++ }' \
    "$tmp/work/domains" >"$tmp/work/incr"
ti1=$(now)
ISSUE_WORKERS=1 issue "$tmp/work/incr"
ti2=$(now)
ni=$(issued_count "$tmp/work/incr.raw")
[ "$ni" = "$(wc -l <"$tmp/work/incr")" ] || die "incremental: $ni issued"
lastd=$(tail -1 "$tmp/work/incr")
want=$(norm "$(grep -o "\"domain\":\"$lastd\"[^}]*" "$tmp/work/incr.raw" \
    | sed 's/.*"serial":"\([0-9a-f]*\)".*/\1/')")
deadline=$(($(date +%s) + 1800))
while [ "$(served "$lastd")" != "$want" ]; do
    [ "$(date +%s)" -lt "$deadline" ] || die "incremental: not served"
    sleep 0.2
done
ti3=$(now)
# Every one of them.
bad=0
while read -r d; do
    w=$(norm "$(grep -o "\"domain\":\"$d\"[^}]*" "$tmp/work/incr.raw" \
        | sed 's/.*"serial":"\([0-9a-f]*\)".*/\1/')")
    [ "$(served "$d")" = "$w" ] || bad=$((bad + 1))
done <"$tmp/work/incr"
restarts=$(tail -n +"$((lines0 + 1))" "$pxlog" | grep -c 'AH00493')
ti_sync=$(log_first CY00005 "$lines0")
ti_sig=$(log_first AH00493 "$lines0")
ti_res=$(log_last AH00489 "$lines0")
say "incremental: $ni changes issued in $(secs "$ti1" "$ti2") s"
say "  last change served (handshake shows its new serial):" \
    "$(secs "$ti2" "$ti3") s after the last change," \
    "$(secs "$ti1" "$ti3") s after the first"
say "  first sync of them done $(secs "$ti1" "$ti_sync") s after the first" \
    "change; $restarts graceful restart(s), the last one serving" \
    "$(secs "$ti1" "$ti_res") s after the first change"
say "  all $ni served with their new serial: $([ $bad = 0 ] && echo yes \
    || echo "NO ($bad not)")"
[ "$bad" = 0 ]
