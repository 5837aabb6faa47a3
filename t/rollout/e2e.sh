#!/bin/bash
#
# t/rollout/e2e.sh: staggered restarts across a pool, end to end (issue 5,
# ARCHITECTURE.md section 6, docs/mod_certsync.md).
#
# Starts the demo pool of t/lib/pool.sh on 127.0.0.1: CertService, a
# backend, three proxy httpds (mod_proxy_protocol, mod_ssl, mod_macro_gen,
# mod_certsync; pool "demo", hosts proxy1..3, CertServiceMaxUnavailable 1)
# and HAProxy (TCP mode, send-proxy-v2, httpchk on /certsync-health and
# agent-check on CertSyncAgent, a stats socket).  A client load runs
# through HAProxy the whole time: curl with SNI for many domains, the demo
# CA verified, part on a new connection per request, part on kept-alive
# connections, over HTTP/2 (RT_LOAD_HTTP; a request a graceful restart's
# GOAWAY refused is sent again once, as RFC 9113 allows: t/lib/rollout.sh,
# docs/tls.md).  A sampler records every
# RT_SAMPLE_MS HAProxy's `show stat` and each proxy's /certsync-status.
#
#   1. Full rollout under load: RT_CHANGES domains change on CertService
#      (new ones and re-issues of the domains under load) in a few bursts;
#      never more than one proxy is out of rotation at once (HAProxy DRAIN/
#      DOWN/MAINT, or certsync draining/restarting/rolling-back, or no
#      answer), each proxy restarted, every request succeeded, every proxy
#      finally serves every new serial (TLS handshake vs CertService's
#      GET /v1/domains/D), no lease is left.
#   2. A broken configuration: proxy2 gets a bad directive in a file its
#      configuration includes, written after startup (the running
#      configuration is fine, `httpd -t` fails).  It does not restart
#      (configtest-failed, CY00007, same sync daemon, same restart count,
#      never out of rotation, keeps serving what it served); proxies 1 and 3
#      roll; no request fails.  Fixed, it catches up.
#   3. A failing probe: proxy3 gets, after startup, a hand-written virtual
#      host for a name CertService then issues, placed before the generated
#      ones (think of a legacy vhost nobody removed).  mod_certsync verifies
#      the new bundle (it is fine) and restarts, but httpd picks the first
#      virtual host that matches the SNI name, so the listener presents the
#      hand-written certificate: the probe fails, the store is rolled back
#      (rolled-back, CY00017 and CY00015, last_rollout_failure, the new name
#      leaves the manifest), the lease is released at once (not left to
#      expire), the other proxies serve the new name; no request fails.
#      A name issued with it (most likely in the same rollout) is served
#      fine: it stays live on proxy3 and out of its quarantine (only the
#      serials that did not match go back).
#   4. The lease holder dies: when a proxy starts draining, its httpd
#      parent and children are killed (SIGKILL).  Its lease is not taken
#      over before it expires (CertSyncLeaseTTL); then the two others roll
#      and serve every change, never both out at once.  Started again, the
#      dead proxy serves everything, raises no rollback alert and leaves no
#      lease behind.
#   5. A restarted generation that is slow to answer its probe: proxy1's
#      CertSyncProbe is pointed (test-only include) at a port where
#      connections are accepted by the kernel but nobody answers (like a
#      listener whose generation cannot start its children: "scoreboard is
#      full"), for longer than the lease's TTL, then at a forwarder to its
#      real listener.  The probe keeps trying (CY00022) instead of rolling
#      back; the lease is renewed meanwhile (still live after its first
#      TTL; no other proxy drains: never two out); then the rollout
#      completes (CY00014, no rollback, nothing quarantined); no request
#      fails.  Meanwhile the agent port answers "drain" at once although
#      the daemon waits on probe handshakes.  Needs socat (else skipped).
#   6. HAProxy asks an agent late: while proxy2 rolls out, HAProxy's
#      agent-check on it is stopped (stats socket), so HAProxy keeps it in
#      DRAIN after it turned ready.  proxy2 keeps its lease (nobody else
#      leaves the rotation) until HAProxy asks again and is answered
#      "ready", then releases it at once; no request fails.
#
# Output: "ok N - ..." / "not ok N - ..." per check, diagnostics as "# ...",
# and one last line "N passed, M failed"; the exit status is non-zero if a
# check failed.  Runs as a normal user or as root (httpd's children then
# run as nobody).  Only 127.0.0.1/127.0.0.2, 33 ports BASE..BASE+32 from
# 61000 up (above Linux's ephemeral range); everything it starts is
# stopped on exit.  3 minutes on an idle 2-CPU machine, up to 6 when
# other jobs load it.
#
# Environment (all optional):
#   RT_DOMAINS          domains under load, served before the rollout [24]
#   RT_CHANGES          domains changed in scenario 1 [50]; a third of them
#                       (at most RT_DOMAINS) are re-issues, the rest new
#   RT_LEASE_TTL        CertSyncLeaseTTL [20] (scenario 4 waits for it)
#   RT_RESTART_TIMEOUT  CertSyncRestartTimeout [12] (the lease is renewed
#                       every third of its TTL while the restarted
#                       generation probes, so it may exceed RT_LEASE_TTL)
#   RT_DRAIN_TIME       CertSyncDrainTime [2] (HAProxy agent-inter 500ms)
#   RT_WAIT             seconds to wait for a wave of restarts [120]
#   RT_LOAD_NEW, RT_LOAD_KA, RT_LOAD_BATCH, RT_LOAD_KA_REQS, RT_LOAD_PAUSE,
#   RT_LOAD_MAX, RT_LOAD_SECONDS, RT_SAMPLE_MS   (t/lib/rollout.sh)
#   RT_PORT_BASE        the base port [61000 + 40 * (PID % 100), a free one]
#   CERTSUITE_KEEP=1    keep the directory (logs, samples, load logs);
#                       CERTSUITE_KEEP=failed: only when a check failed
#   HTTPD / POOL_HTTPD  the httpd binary
#
set -u
export LC_ALL=C

here=$(cd "$(dirname "$0")" && pwd)

RT_DOMAINS=${RT_DOMAINS:-24}
RT_CHANGES=${RT_CHANGES:-50}
RT_LEASE_TTL=${RT_LEASE_TTL:-20}
RT_RESTART_TIMEOUT=${RT_RESTART_TIMEOUT:-12}
RT_DRAIN_TIME=${RT_DRAIN_TIME:-2}
RT_WAIT=${RT_WAIT:-120}

# --- Test output -------------------------------------------------------------

# shellcheck source=../lib/rollout.sh
. "$here/../lib/rollout.sh"     # and t/lib/pool.sh, t/lib/certsuite.sh
tap_init
finish() { # the summary is the last line: stop everything first
    cs_cleanup
    echo "$npass passed, $nfail failed"
    [ $nfail = 0 ]
    exit
}
elapsed() { echo "$((SECONDS - T0))s"; }

# --- Setup -------------------------------------------------------------------

for p in curl openssl awk; do
    command -v $p >/dev/null 2>&1 || bail "$p is needed"
done
command -v socat >/dev/null 2>&1 || command -v python3 >/dev/null 2>&1 \
    || command -v perl >/dev/null 2>&1 || bail "socat, python3 or perl is needed"


cs_tmpdir rollout-e2e || bail "mktemp failed"
chmod 755 "$tmp"
work=$tmp/work
mkdir -p "$work"

on_cleanup() {
    rt_sampler_stop
    rt_load_stop
    stop_pids ${s5_pids:-}
    pool_stop_all
}

POOL_LEASE_TTL=$RT_LEASE_TTL
POOL_DRAIN_TIME=$RT_DRAIN_TIME
POOL_SYNC_INTERVAL=${POOL_SYNC_INTERVAL:-2 1}
# A port taken meanwhile (another test, or a client's outgoing
# connection): try other ports.
started=
for attempt in 1 2 3; do
    base=${RT_PORT_BASE:-}
    [ -n "$base" ] || base=$(pool_pick_base) || bail "no free ports"
    if rt_start_pool "$tmp/pool" "$base" >"$work/start.log" 2>&1; then
        started=1
        break
    fi
    pool_stop_all
    grep -qi 'in use' "$work/start.log" || break
    [ -z "${RT_PORT_BASE:-}" ] || break
    diag "ports from $base: one is in use, trying others"
    rm -rf "$tmp/pool"
done
if [ -z "$started" ]; then
    diag "$(cat "$work/start.log")"
    diag "$(pool_log_tail 10 2>/dev/null)"
    bail "the pool did not start"
fi
ok "pool started on 127.0.0.1:$base.. (CertService, backend, proxy1-3, HAProxy; lease TTL ${RT_LEASE_TTL}s, drain ${RT_DRAIN_TIME}s)"

# HAProxy sees the three proxies up (httpchk and agent-check).
for i in $(seq 1 50); do
    up=$(pool_lb_cmd "show stat" 2>/dev/null | awk -F, '$1 == "proxies" &&
           $2 ~ /^proxy/ && $18 == "UP"' | wc -l)
    [ "$up" = 3 ] && break
    sleep 0.2
done
is "$up" 3 "HAProxy: the three proxies are UP"

# restarts N: the restart counter of proxy N's status
restarts() {
    pool_proxy_status "$1" 2>/dev/null | awk -F: '/"restarts"/ {
        gsub(/[ ,]/, "", $2); print $2 }'
}
# wait_state N REGEX SECONDS: until proxy N's state matches
wait_state() {
    local end=$((SECONDS + $3)) s
    while :; do
        s=$(pool_proxy_state "$1")
        [[ $s =~ $2 ]] && return 0
        [ $SECONDS -ge $end ] && return 1
        sleep 0.2
    done
}
# served_and_idle FILE: every proxy serves FILE's serials (RT_WAIT), then
# all three are idle (30 s each)
served_and_idle() {
    rt_wait_served "$1" "$RT_WAIT" 1 2 3 && wait_state 1 '^idle$' 30 \
        && wait_state 2 '^idle$' 30 && wait_state 3 '^idle$' 30
}
states() {
    local i
    for i in 1 2 3; do
        echo "proxy$i: $(pool_proxy_state $i) (HAProxy $(pool_lb_state $i))"
    done
}
dump() { # on a failed wait
    diag "$(states)"
    diag "$(pool_log_tail 30 2>/dev/null | grep -v 'AH01630:' | cut -c1-240)"
}
# s_counts SINCE UNTIL LABEL: requests of that window; ok if none failed
s_counts() {
    local c
    c=($(rt_load_counts "$1" "$2"))
    diag "$3: ${c[0]} requests (${c[2]} on new connections, ${c[3]} kept alive), ${c[1]} failed; $(rt_load_refused_text "$1" "$2")"
    [ "${c[0]}" -gt 0 ] && [ "${c[1]}" = 0 ]
    okif $? "$3: every request through HAProxy succeeded (${c[0]} requests, ${c[1]} failed)" \
        || diag "$(rt_load_failures "$1" "$2" | head -n 10)
curl -v logs of the batches with a failure: $(ls "$RT_LOAD_DIR"/*.failed.*.v 2>/dev/null | tr '\n' ' ')"
}
# s_max_out FROM TO LABEL [SKIP]
s_max_out() {
    local m
    m=($(rt_max_out "$work/samples" "$1" "$2" "${4:-0}"))
    [ "${m[0]}" -le 1 ]
    okif $? "$3: never more than one proxy out of rotation (max ${m[0]} in ${m[1]} samples)" \
        || diag "$(rt_overlaps "$work/samples" "$1" "$2" "${4:-0}" | head -n 10)"
}
now() { date +%s; }
lease_check() { # DESC
    local l
    if ! command -v sqlite3 >/dev/null 2>&1; then
        ok "$1 # SKIP no sqlite3"
        return 0
    fi
    l=$(no_leases)
    okif $? "$1" || diag "live: $l"
}
# no_leases: until no host holds a live lease (a host keeps its lease while
# the load balancer puts it back: CertSyncDrainTime after "ready", and
# until HAProxy has asked the agent again);
# prints the live ones if some remain
no_leases() {
    local i l
    for ((i = 0; i < (RT_DRAIN_TIME + 3) * 5; i++)); do
        l=$(for h in proxy1 proxy2 proxy3; do rt_lease_of $h | sed "s/^/$h /"; done)
        [ -z "$l" ] && return 0
        sleep 0.2
    done
    echo "$l (now $(now))"
    return 1
}

# --- The domains under load --------------------------------------------------

load=$work/load-domains
: >"$load"
for ((i = 1; i <= RT_DOMAINS; i++)); do
    printf 'load-%02d.rollout.test\n' "$i"
done >"$work/load-names"
rt_issue "$load" $(cat "$work/load-names")
okif $? "$RT_DOMAINS domains issued on CertService"
if rt_wait_served "$load" "$RT_WAIT" 1 2 3; then
    ok "every proxy serves the $RT_DOMAINS domains ($(elapsed))"
else
    notok "every proxy serves the $RT_DOMAINS domains"
    dump
    bail "the pool does not converge"
fi

rt_sampler_start "$work/samples"
rt_load_start "$work/load" "$load"
sleep 2

# --- 1. Full rollout under load ----------------------------------------------

echo "# 1. full rollout under load: $RT_CHANGES changes"
s1_from=$(now)
reissue=$((RT_CHANGES / 3))
[ $reissue -gt "$RT_DOMAINS" ] && reissue=$RT_DOMAINS
fresh=$((RT_CHANGES - reissue))
for i in 1 2 3; do
    r1[$i]=$(restarts $i)
done
: >"$work/s1-changes"
{
    head -n "$reissue" "$work/load-names"
    for ((i = 1; i <= fresh; i++)); do printf 's1-new-%02d.rollout.test\n' "$i"; done
} | shuf >"$work/s1-names" 2>/dev/null || true
[ -s "$work/s1-names" ] || {
    head -n "$reissue" "$work/load-names"
    for ((i = 1; i <= fresh; i++)); do printf 's1-new-%02d.rollout.test\n' "$i"; done
} >"$work/s1-names"
# Two bursts, a second apart: more than one sync cycle sees changes,
# rollouts coalesce what arrives meanwhile.
burst=$(((RT_CHANGES + 1) / 2))
split -l "$burst" "$work/s1-names" "$work/s1-burst."
for f in "$work"/s1-burst.*; do
    rt_issue "$work/s1-changes" $(cat "$f")
    sleep 1
done
is "$(wc -l <"$work/s1-changes")" "$RT_CHANGES" \
    "$RT_CHANGES domains changed on CertService ($reissue re-issues of domains under load, $fresh new)"
if served_and_idle "$work/s1-changes"; then
    ok "the pool converged ($(($(now) - s1_from)) s after the first change)"
else
    notok "the pool converged"
    dump
fi
diag "scenario 1: all idle at $(elapsed)"
sleep 2   # HAProxy: the last proxy back UP (rise 1, inter 1s)
s1_to=$(now)
s_max_out "$s1_from" "$s1_to" "scenario 1"
for i in 1 2 3; do
    r=$(restarts $i)
    o=$(rt_out_samples "$work/samples" $i "$s1_from" "$s1_to")
    [ "${r:-0}" -gt "${r1[$i]:-0}" ] && [ "$o" -gt 0 ]
    okif $? "scenario 1: proxy$i restarted $((${r:-0} - ${r1[$i]:-0})) time(s), out of rotation in $o samples"
done
diag "$(for i in 1 2 3; do
          echo "proxy$i out of rotation (HAProxy or certsync): $(rt_out_periods "$work/samples" $i |
              awk -v a="$s1_from" '$1 >= a { printf "%.1fs ", $2 - $1 }')"
      done)"
s_counts "$s1_from" "$s1_to" "scenario 1"
diag "scenario 1: checking serials at $(elapsed)"
mism=$(rt_check_served "$work/s1-changes" 1 2 3)
okif $? "scenario 1: every proxy presents CertService's serial of each of the $RT_CHANGES changed domains" \
    || diag "$(head -n 10 <<<"$mism")"
lease_check "scenario 1: no restart lease left in CertService's database"
bad=$(cat "$POOL_DIR"/proxy*/logs/error_log | grep -E 'CY000(07|15|16|17|25):' | head -n 5)
[ -z "$bad" ]
okif $? "scenario 1: no failed configuration test, probe or rollback logged" || diag "$bad"
diag "scenario 1 done at $(elapsed)"

# --- 2. A configuration that does not pass httpd -t ------------------------------

echo "# 2. proxy2's configuration breaks after startup"
s2_from=$(now)
rt_post_conf 2 "RolloutTestBrokenDirective on"
"$POOL_HTTPD" -t -f "$POOL_DIR/proxy2/httpd.conf" >/dev/null 2>&1
[ $? != 0 ]
okif $? "scenario 2: httpd -t now fails on proxy2's configuration"
d2=$(rt_daemon_pid 2)
r2=$(restarts 2)
echo "load-01.rollout.test" >"$work/s2-name"
old2=$(rt_served 2 "$work/s2-name")
: >"$work/s2-changes"
rt_issue "$work/s2-changes" s2-new-1.rollout.test s2-new-2.rollout.test \
    load-01.rollout.test
wait_state 2 '^configtest-failed$' 30
okif $? "scenario 2: proxy2's status shows configtest-failed" || dump
if rt_wait_served "$work/s2-changes" "$RT_WAIT" 1 3; then
    ok "scenario 2: proxy1 and proxy3 rolled out the changes"
else
    notok "scenario 2: proxy1 and proxy3 rolled out the changes"
    dump
fi
s2_mid=$(now)
grep -q 'CY00007:' "$POOL_DIR/proxy2/logs/error_log"
okif $? "scenario 2: CY00007 (configuration test failed) in proxy2's error log"
is "$(rt_daemon_pid 2) $(restarts 2)" "$d2 $r2" \
    "scenario 2: proxy2 did not restart (same sync daemon, same restart count)"
o=$(rt_out_samples "$work/samples" 2 "$s2_from" "$s2_mid")
is "$o" 0 "scenario 2: proxy2 never left the rotation"
printf '%s\n' "$old2" >"$work/s2-old"
printf 's2-new-1.rollout.test -\n' >>"$work/s2-old"
got=$(rt_served 2 "$work/s2-old" | tr '\n' ' ')
want=$(tr '\n' ' ' <"$work/s2-old")
is "$got" "$want" "scenario 2: proxy2 still serves what it served (old serial of a re-issued domain, no new domain)"
s_max_out "$s2_from" "$s2_mid" "scenario 2"
s_counts "$s2_from" "$s2_mid" "scenario 2"
# Fixed: proxy2 catches up (scenario 3 starts meanwhile).
rt_post_conf 2
diag "scenario 2: configuration fixed at $(elapsed)"

# --- 3. A probe that fails after the restart ------------------------------------

echo "# 3. proxy3 presents another certificate for a new name after its restart"
s3_from=$(now)
shadow=s3-shadow.rollout.test
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout "$POOL_DIR/proxy3/legacy.key" -out "$POOL_DIR/proxy3/legacy.crt" \
    -days 2 -subj "/CN=$shadow" -addext "subjectAltName=DNS:$shadow" \
    >/dev/null 2>&1
chmod 644 "$POOL_DIR/proxy3/legacy.key"
cat >"$POOL_DIR/proxy3/rollout-pre.conf" <<EOF
# A hand-written virtual host for a name CertService now also issues
# (written by t/rollout/e2e.sh).  Before MacroGenerate: httpd picks it.
<VirtualHost 127.0.0.1:$(pool_proxy_port 3 tls)>
    ServerName $shadow
    SSLEngine on
    SSLCertificateFile    "$POOL_DIR/proxy3/legacy.crt"
    SSLCertificateKeyFile "$POOL_DIR/proxy3/legacy.key"
</VirtualHost>
EOF
: >"$work/s3-changes"
s3ok=s3-fine.rollout.test
rt_issue "$work/s3-changes" "$shadow" "$s3ok"
okif $? "scenario 3: $shadow and $s3ok issued"
# Until CY00015 is logged; the state may show rolled-back meanwhile.
seen=
end=$((SECONDS + RT_WAIT))
while [ $SECONDS -lt $end ]; do
    s=$(pool_proxy_state 3)
    if [ "$s" = rolled-back ]; then
        seen=$s
        break
    fi
    grep -q 'CY00015:' "$POOL_DIR/proxy3/logs/error_log" && break
    sleep 0.2
done
grep -q 'CY00015:' "$POOL_DIR/proxy3/logs/error_log"
okif $? "scenario 3: CY00015 (rolled back) in proxy3's error log" || dump
t15=$(now)
# Released, not left to expire: gone from the database within
# CertSyncDrainTime + 3 s of the alert (it was renewed, for
# CertSyncLeaseTTL, when the rolled-back generation started).
for i in $(seq 1 $(((RT_DRAIN_TIME + 3) * 10))); do
    l=$(rt_lease_of proxy3)
    [ -z "$l" ] && break
    sleep 0.1
done
if ! command -v sqlite3 >/dev/null 2>&1; then
    ok "scenario 3: lease released # SKIP no sqlite3"
else
    [ -z "$l" ]
    okif $? "scenario 3: proxy3's lease released at once after the rollback" \
        || diag "live lease: $l (now $(now))"
fi
grep -q "CY00017: probe after restart failed (.*$shadow" \
    "$POOL_DIR/proxy3/logs/error_log"
okif $? "scenario 3: CY00017 names the failing probe of $shadow" \
    || diag "$(grep -E 'CY0001[57]' "$POOL_DIR/proxy3/logs/error_log" | cut -c1-240)"
# The alert stays in the status (docs/mod_certsync.md: "state rolled-back
# and last_rollout_failure"): look for it during the 2 s after CY00015,
# and in every sample.
after=
for i in $(seq 1 10); do
    s=$(pool_proxy_state 3)
    after="$after $s"
    [ "$s" = rolled-back ] && seen=$s
    sleep 0.2
done
if [ -z "$seen" ]; then
    awk '$7 ~ /^rolled-back/' "$work/samples" | grep -q . && seen=rolled-back
fi
is "${seen:-never}" rolled-back "scenario 3: proxy3's status shows state rolled-back after the rollback" \
    || diag "proxy3's state in the 2 s after CY00015:$(tr ' ' '\n' <<<"$after" | uniq | tr '\n' ' ')"
f=$(pool_proxy_status 3 | tr -d '\n' | sed -n 's/.*"last_rollout_failure": *\("[^"]*"\).*/\1/p')
case $f in
    *"$shadow"*) ok "scenario 3: last_rollout_failure: $f" ;;
    *) notok "scenario 3: last_rollout_failure names $shadow"; diag "got: ${f:-none}" ;;
esac
if grep -q "^$shadow[[:space:]]" "$POOL_DIR/proxy3/store/manifest"; then
    notok "scenario 3: $shadow left proxy3's manifest"
else
    ok "scenario 3: $shadow left proxy3's manifest"
fi
grep "^$s3ok " "$work/s3-changes" >"$work/s3-fine"
if rt_wait_served "$work/s3-fine" 30 3; then
    ok "scenario 3: proxy3 serves $s3ok's new serial (not rolled back with $shadow)"
else
    notok "scenario 3: proxy3 serves $s3ok's new serial"
    diag "$(rt_served 3 "$work/s3-fine")"
fi
q=$(tr -d ' \n' 2>/dev/null <"$POOL_DIR/proxy3/store/quarantine.json")
case $q in
    *"\"$s3ok\""*) notok "scenario 3: proxy3 quarantined $shadow only"; diag "quarantine.json: $q" ;;
    *"\"$shadow\""*) ok "scenario 3: proxy3 quarantined $shadow only" ;;
    *) notok "scenario 3: proxy3 quarantined $shadow only"; diag "quarantine.json: ${q:-missing}" ;;
esac
# The others go on: proxy1 (and proxy2, fixed) serve the new name, and
# proxy2 caught up with scenario 2.
if rt_wait_served "$work/s3-changes" "$RT_WAIT" 1 2; then
    ok "scenario 3: proxy1 and proxy2 serve $shadow's new serial"
else
    notok "scenario 3: proxy1 and proxy2 serve $shadow's new serial"
    dump
fi
if rt_wait_served "$work/s2-changes" 30 2 && wait_state 2 '^idle$' 30; then
    ok "scenario 2: fixed, proxy2 caught up (serves the changes, idle)"
else
    notok "scenario 2: fixed, proxy2 caught up"
    dump
fi
for i in 1 2 3; do wait_state $i '^(idle|rolled-back)$' 30; done
diag "$(for i in 1 2 3; do grep -h -E 'CY000(06|14|15):' "$POOL_DIR/proxy$i/logs/error_log" |
          while IFS= read -r l; do t=$(rt_log_time "$l");
             awk -v t="$t" -v a="$s2_from" 'BEGIN { exit !(t >= a) }' &&
             echo "$t proxy$i $(sed 's/.*\] \(CY000[0-9]*\): \(.\{0,70\}\).*/\1 \2/' <<<"$l")"; done
        done | sort | sed 's/^[0-9.]* //')"
sleep 2
s3_to=$(now)
s_max_out "$s3_from" "$s3_to" "scenario 3"
s_counts "$s2_mid" "$s3_to" "scenario 3 (and proxy2's catch-up)"
diag "scenario 3 done at $(elapsed)"

# --- 4. The lease holder is killed ----------------------------------------------

echo "# 4. the proxy holding the lease is killed (SIGKILL) while it drains"
: >"$POOL_DIR/proxy3/rollout-pre.conf"   # the legacy vhost goes
s4_from=$(now)
: >"$work/s4-changes"
rt_issue "$work/s4-changes" "$shadow" s1-new-01.rollout.test \
    s4-new-1.rollout.test s4-new-2.rollout.test load-02.rollout.test
victim=
end=$((SECONDS + RT_WAIT))
while [ -z "$victim" ] && [ $SECONDS -lt $end ]; do
    for i in 1 2 3; do
        s=$(rt_json_state $i)
        if [ "${s% *}" = draining ]; then
            victim=$i
            break
        fi
    done
    [ -n "$victim" ] || sleep 0.1
done
if [ -z "$victim" ]; then
    notok "scenario 4: a proxy started draining"
    dump
else
    vpid=$(rt_proxy_pid "$victim")
    kids=$(ps -o pid= --ppid "$vpid" 2>/dev/null | tr -s ' \n' ' ')
    lease=$(rt_lease_of "proxy$victim")
    # The whole process group at once (httpd -k start leads its own): a
    # child forked between the listing and a kill of the pids (the drain
    # ends in a graceful restart) outlived it, held the ports, and the
    # proxy could not start again.
    kill -KILL -- "-$vpid" 2>/dev/null || kill -KILL "$vpid" $kids 2>/dev/null
    tk=$(rt_now)
    ok "scenario 4: proxy$victim drains: killed its httpd parent $vpid and children $kids"
    exp=
    [ -n "$lease" ] && exp=${lease#* }
    diag "its lease: ${lease:-none found} ${exp:+(expires in $((exp - ${tk%.*})) s)}"
    others=$(for i in 1 2 3; do [ $i = "$victim" ] || printf '%s ' $i; done)
    others=${others% }
    if rt_wait_served "$work/s4-changes" "$RT_WAIT" $others; then
        ok "scenario 4: the two others (proxy${others% *} and proxy${others#* }) rolled out every change"
    else
        notok "scenario 4: the two others rolled out every change"
        dump
    fi
    for i in $others; do wait_state $i '^idle$' 30; done
    sleep 2
    s4_to=$(now)
    # Nobody drained before the dead proxy's lease expired.
    first=$(for i in $others; do rt_log_lines $i 'CY00006:' "${tk%.*}"; done \
            | sort -n | head -n 1 | awk '{ print $1 }')
    if [ -n "$first" ] && [ -n "$exp" ]; then
        awk -v f="$first" -v e="$exp" 'BEGIN { exit !(f >= e - 1) }'
        okif $? "scenario 4: the next lease was granted $(awk -v f="$first" -v k="$tk" 'BEGIN { printf "%.1f", f - k }') s after the kill, when the dead proxy's lease had expired ($(awk -v f="$first" -v e="$exp" 'BEGIN { printf "%+.1f", f - e }') s)"
    else
        notok "scenario 4: the next lease after the lease expired"
        diag "first lease after the kill: ${first:-none}, dead lease: ${lease:-none}"
    fi
    s_max_out "${tk%.*}" "$s4_to" "scenario 4 (among the live proxies)" "$victim"
    c=($(rt_load_counts "$s4_from" "$s4_to"))
    c2=($(rt_load_counts "$(( ${tk%.*} + 3 ))" "$s4_to"))
    diag "scenario 4: ${c[0]} requests, ${c[1]} failed (connections open on the killed proxy can fail); ${c2[0]} requests started 3 s or more after the kill, ${c2[1]} failed"
    [ "${c2[0]}" -gt 0 ] && [ "${c2[1]}" = 0 ]
    okif $? "scenario 4: every request started 3 s after the kill or later succeeded (${c2[0]} requests, ${c2[1]} failed)" \
        || diag "$(rt_load_failures "$(( ${tk%.*} + 3 ))" "$s4_to" | head -n 5)"
    # The dead proxy comes back: a fresh start serves its whole store.
    tr=$(now)
    if pool_start_proxy "$victim" >"$work/restart.log" 2>&1; then
        rt_patch_conf "$victim"
        ok "scenario 4: proxy$victim started again"
    else
        notok "scenario 4: proxy$victim started again"
        diag "$(cat "$work/restart.log")"
    fi
    all=$work/s4-all
    cat "$work/s4-changes" >"$all"
    if rt_wait_served "$all" 60 "$victim" && wait_state "$victim" '^idle$' 30; then
        ok "scenario 4: proxy$victim serves every change and is idle"
    else
        notok "scenario 4: proxy$victim serves every change and is idle"
        dump
    fi
    sleep 1
    alerts=$(rt_log_lines "$victim" 'CY00015:' "$tr")
    [ -z "$alerts" ]
    okif $? "scenario 4: proxy$victim raises no rollback alert (nothing was rolled back)" \
        || diag "$(cut -c1-220 <<<"$alerts")"
    lease_check "scenario 4: no restart lease left in CertService's database"
fi

# --- 5. A probe that does not get an answer for a while ---------------------

echo "# 5. proxy1's restarted generation does not answer its probe for longer than the lease TTL"
s5_slow=$((RT_LEASE_TTL + 6))
if ! command -v socat >/dev/null 2>&1; then
    ok "scenario 5 # SKIP no socat"
else
    for i in 1 2 3; do wait_state $i '^(idle|rolled-back)$' 60; done
    s5_from=$(now)
    hole=$((base + 9))
    # Connections queue in the backlog, nobody accepts: every handshake
    # times out, as with a generation that cannot start its children.
    perl -MIO::Socket::INET -e '
        my $s = IO::Socket::INET->new(LocalAddr => "127.0.0.1",
            LocalPort => $ARGV[0], Listen => 128, ReuseAddr => 1)
            or die "listen $ARGV[0]: $!\n";
        sleep 1 while 1;' "$hole" 2>"$work/s5-hole.log" &
    s5_pids=$!
    rt_post_conf 1 "CertSyncProbe 127.0.0.1:$hole" \
        "CertSyncRestartTimeout $((s5_slow + 30))"
    : >"$work/s5-changes"
    rt_issue "$work/s5-changes" s5-slow-1.rollout.test load-03.rollout.test
    okif $? "scenario 5: two domains changed (one new, one re-issued)"
    if wait_state 1 '^probing$' "$RT_WAIT"; then
        tp=$(now)
        ok "scenario 5: proxy1 restarted and probes (its listener does not answer the probe)"
        l1=$(rt_lease_of proxy1)
        diag "proxy1's lease when it started probing: ${l1:-none} (now $tp)"
        # The agent answers while the daemon's main thread waits on probe
        # handshakes (5 s each): within 1 s, every time.
        ag=0
        for i in 1 2 3 4 5 6; do
            a=$(timeout 1 socat -u "TCP:127.0.0.1:$(pool_proxy_port 1 agent)" STDOUT 2>/dev/null)
            [ "$a" = drain ] && ag=$((ag + 1))
            sleep 0.5
        done
        is "$ag" 6 "scenario 5: proxy1's agent answers drain within 1 s while its daemon probes (6 of 6 asked)"
        # Past the first TTL of the lease (granted before the drain).
        sleep $((RT_LEASE_TTL + 2))
        s=$(pool_proxy_state 1)
        l2=$(rt_lease_of proxy1)
        is "$s" probing "scenario 5: proxy1 still probes $((RT_LEASE_TTL + 2)) s later (not rolled back on handshake timeouts)"
        if command -v sqlite3 >/dev/null 2>&1; then
            [ -n "$l2" ] && [ "${l1%% *}" = "${l2%% *}" ]
            okif $? "scenario 5: proxy1 still holds the same lease, renewed (was ${l1#* }, now expires ${l2#* })" \
                || diag "lease before: ${l1:-none}, now: ${l2:-none} (now $(now))"
        else
            ok "scenario 5: lease renewed # SKIP no sqlite3"
        fi
        sleep $((s5_slow - RT_LEASE_TTL - 2))
        # The listener "comes back": the probe's port now reaches it.
        kill $s5_pids 2>/dev/null
        wait $s5_pids 2>/dev/null
        socat TCP-LISTEN:$hole,bind=127.0.0.1,reuseaddr,fork \
            TCP:127.0.0.1:$(pool_proxy_port 1 tls) 2>"$work/s5-fwd.log" &
        s5_pids=$!
        tf=$(now)
        diag "scenario 5: probe port forwarded to proxy1's listener $((tf - tp)) s after probing began"
    else
        notok "scenario 5: proxy1 restarted and probes"
        dump
    fi
    if served_and_idle "$work/s5-changes"; then
        ok "scenario 5: every proxy serves both changes, all idle"
    else
        notok "scenario 5: every proxy serves both changes, all idle"
        dump
    fi
    sleep 2
    s5_to=$(now)
    l=$(rt_log_lines 1 'CY00022:' "$s5_from")
    [ -n "$l" ]
    okif $? "scenario 5: CY00022 (probe waits for the listener) in proxy1's log" \
        || dump
    l=$(rt_log_lines 1 'CY00014:' "$s5_from")
    [ -n "$l" ]
    okif $? "scenario 5: proxy1's rollout completed (CY00014)"
    bad=$(for t in CY00015: CY00016: CY00017: CY00020: CY00025:; do
              rt_log_lines 1 "$t" "$s5_from"; done)
    [ -z "$bad" ]
    okif $? "scenario 5: no rollback, no lost lease (no CY00015/16/17/20/25)" \
        || diag "$(cut -c1-240 <<<"$bad")"
    q=$(tr -d ' \n' 2>/dev/null <"$POOL_DIR/proxy1/store/quarantine.json")
    case $q in
        *s5-slow-1*|*load-03*) notok "scenario 5: nothing quarantined"; diag "$q" ;;
        *) ok "scenario 5: nothing quarantined" ;;
    esac
    o=$(rt_out_samples "$work/samples" 1 "$s5_from" "$s5_to")
    s_max_out "$s5_from" "$s5_to" "scenario 5 (proxy1 out of rotation in $o samples)"
    s_counts "$s5_from" "$s5_to" "scenario 5"
    lease_check "scenario 5: no restart lease left in CertService's database"
    rt_post_conf 1
    diag "scenario 5 done at $(elapsed)"
fi

# --- 6. HAProxy does not ask the agent again in time ---------------------------

# While proxy2 rolls out, HAProxy's agent-check on it is stopped (stats
# socket "disable agent"), so HAProxy keeps it in DRAIN after proxy2 turns
# ready, as when HAProxy's agent connections were refused or late.  proxy2
# must keep its lease (no other proxy may leave the rotation) until HAProxy
# has been answered "ready", and release it right after.
echo "# 6. HAProxy asks proxy2's agent late: proxy2 keeps its lease until it has answered ready"
s6_from=$(now)
: >"$work/s6-changes"
rt_issue "$work/s6-changes" s6-new.rollout.test
s6_seen=
for ((i = 0; i < RT_WAIT * 5; i++)); do
    [[ $(pool_lb_state 2 2>/dev/null) == DRAIN* ]] && { s6_seen=1; break; }
    sleep 0.2
done
pool_lb_cmd "disable agent proxies/proxy2" >/dev/null
# Out of rotation either way: DRAIN (the agent's last word), or DOWN when
# proxy2's graceful restart already has its health check failing (seen
# under load: the restart follows the 2 s drain closely).
s6_state=$(pool_lb_state 2 2>/dev/null)
[ -n "$s6_seen" ] && [[ $s6_state == DRAIN* || $s6_state == DOWN* ]]
okif $? "scenario 6: HAProxy saw proxy2 draining and keeps it out of rotation with its agent-check stopped (${s6_state:-no state})" || dump
wait_state 2 '^idle$' "$RT_WAIT"
okif $? "scenario 6: proxy2's rollout completed (idle, health ready)" || dump
sleep $((RT_DRAIN_TIME + 2))
l=$(rt_lease_of proxy2)
[ -n "$l" ]
okif $? "scenario 6: $((RT_DRAIN_TIME + 2)) s later proxy2 still holds its lease (HAProxy has not asked)" \
    || diag "$(states)"
o=$(for i in 1 3; do pool_proxy_state $i; done | grep -cE '^(draining|restarting|probing|rolling-back)$')
is "$o" 0 "scenario 6: then, no other proxy is out of rotation"
pool_lb_cmd "enable agent proxies/proxy2" >/dev/null
for ((i = 0; i < 25; i++)); do
    l=$(rt_lease_of proxy2)
    [ -z "$l" ] && [ "$(pool_lb_state 2 2>/dev/null)" = UP ] && break
    sleep 0.2
done
[ -z "$l" ] && [ "$(pool_lb_state 2 2>/dev/null)" = UP ]
okif $? "scenario 6: once HAProxy asks again, proxy2 is UP and its lease released within 5 s" \
    || diag "lease: $l; $(states)"
if rt_wait_served "$work/s6-changes" "$RT_WAIT" 1 2 3; then
    ok "scenario 6: every proxy serves the change"
else
    notok "scenario 6: every proxy serves the change"
    dump
fi
s6_to=$(now)
s_max_out "$s6_from" "$s6_to" "scenario 6"
s_counts "$s6_from" "$s6_to" "scenario 6"
diag "scenario 6 done at $(elapsed)"

# --- The end -------------------------------------------------------------------

# The agent: every new generation's daemon had its port (at once, or once
# the previous daemon let it go), and the load balancer always asked again.
bad=$(grep -h -E 'CY000(13|39):' "$POOL_DIR"/proxy[123]/logs/error_log)
[ -z "$bad" ]
okif $? "every agent listened and was asked after ready (no CY00013, CY00039)" \
    || diag "$(cut -c1-240 <<<"$bad")"
# Every generated virtual host is named after its certificate
# (MacroGenerateServerName): mod_ssl warned at every start, once per
# virtual host, when the macro gave them only a ServerAlias (AH01909).
bad=$(grep -h 'AH01909:' "$POOL_DIR"/proxy[123]/logs/error_log)
[ -z "$bad" ]
okif $? "no AH01909 (certificate does not match the ServerName) in any" \
    "proxy's error log ($(grep -c . <<<"$bad") lines)" \
    || diag "$(head -3 <<<"$bad" | cut -c1-240)"
rt_load_stop
rt_sampler_stop
# A request sent again after a GOAWAY refused it must not have been
# processed the first time (RFC 9113 6.8): the backend saw it once.
c=($(rt_load_counts))
# (The backend logs a request just after its response: give the last
# lines a moment.)
for _ in $(seq 20); do
    seen=$(rt_load_backend_seen)
    [ "$seen" -lt $((c[0] - c[1])) ] || break
    sleep 0.1
done
twice=$(rt_load_backend_twice)
[ -z "$twice" ] && [ "$seen" -ge $((c[0] - c[1])) ]
okif $? "no request of the load reached the backend twice" \
    "($(rt_load_refused | cut -d' ' -f1) sent again after a GOAWAY;" \
    "$seen logged by the backend, $((c[0] - c[1])) answered 200)" \
    || diag "$(head -5 <<<"$twice")"
diag "all scenarios: ${c[0]} requests through HAProxy (${c[2]} on new connections, ${c[3]} kept alive, $RT_LOAD_HTTP), ${c[1]} failed, $(rt_load_refused_text); $(wc -l <"$work/samples") samples; $(elapsed)"
finish
