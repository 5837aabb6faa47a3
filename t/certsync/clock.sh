#!/bin/bash
#
# t/certsync/clock.sh: a proxy whose wall clock is stepped (issue 17,
# "a clock stepped back stalls the sync for as long as the step, even
# across a restart"); docs/mod_certsync.md, section Clocks.
#
# One CertService (real time) and one vhost-mode proxy (CertSyncInterval
# 2 0, CertSyncMinRestartInterval 10) whose httpd runs under libfaketime:
# LD_PRELOAD of libfaketimeMT with FAKETIME_TIMESTAMP_FILE, re-read on
# every call (FAKETIME_NO_CACHE=1), and FAKETIME_DONT_FAKE_MONOTONIC=1, so
# that only the wall clock moves when the test writes an offset there,
# like a clock set by hand or by NTP.  (A time namespace, unshare --time,
# would not do: it offsets CLOCK_MONOTONIC and CLOCK_BOOTTIME only, never
# CLOCK_REALTIME, the clock that is stepped here.)
#
#   1. the proxy starts 2 h ahead (a step forward from CertService's
#      view): it syncs and serves a domain; its status shows times 2 h ahead
#   2. its clock is set right (2 h back): 5 new domains are served within
#      a few sync intervals, not after 2 h; next_sync is not hours ahead
#   3. 2 h ahead again, a domain rolled out (last_restart saved 2 h
#      ahead), then a full stop, the clock set right, a start: state.json
#      holds last_restart and next_sync in the future; new domains are
#      served within CertSyncMinRestartInterval and a few intervals; the
#      daemon says once that it took the last restart as now (CY00200)
#   4. a day behind: a new certificate is not valid yet: its bundle is
#      skipped and listed in the status with why, what is served stays
#      served; set right, the bundle is retried and served
#
# Output as t/certsync/e2e.sh (TAP-like lines, "N passed, M failed").  Runs
# as root or a normal user; talks to 127.0.0.1 only.
#
# Environment: HTTPD, APXS; CERTSUITE_KEEP=1|failed keeps the directory.
#
set -u
export LC_ALL=C

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
# shellcheck source=t/lib/certsuite.sh
. "$top/t/lib/certsuite.sh"
# shellcheck source=t/certsync/common.sh
. "$here/common.sh"
tap_init

ftlib=
for f in /usr/lib/*/faketime/libfaketimeMT.so.1 \
         /usr/lib/faketime/libfaketimeMT.so.1 \
         /usr/lib64/faketime/libfaketimeMT.so.1 \
         /usr/local/lib/faketime/libfaketimeMT.so.1; do
    if [ -f "$f" ]; then
        ftlib=$f
        break
    fi
done
[ -n "$ftlib" ] || bail "libfaketime is needed (Debian: apt-get install faketime)"

csy_setup certsync-clock
clockfile=$tmp/work/clock
set_clock() { # OFFSET: libfaketime's "+2h", "-1d", "+0"
    echo "$1" >"$clockfile"
}
set_clock +0
chmod 644 "$clockfile"
cat >"$tmp/work/httpd-faketime" <<EOF
#!/bin/sh
# httpd with a wall clock that follows $clockfile
LD_PRELOAD="$ftlib\${LD_PRELOAD:+:\$LD_PRELOAD}" \\
FAKETIME_TIMESTAMP_FILE="$clockfile" FAKETIME_NO_CACHE=1 \\
FAKETIME_DONT_FAKE_MONOTONIC=1 exec "$HTTPD" "\$@"
EOF
chmod 755 "$tmp/work/httpd-faketime"
PX_HTTPD=$tmp/work/httpd-faketime

# The proxy's wall clock minus ours, in seconds (its last_sync is written
# each cycle).
px_ahead() {
    echo $(($(st last_sync) - $(date +%s)))
}
# idle, its cursor at CertService's head
px_idle() { [ "$(st state)" = idle ]; }
# served_within FILE SECONDS DESC...: ok if served in time, with the time
served_within() {
    local f=$1 s=$2 t=$SECONDS
    shift 2
    wait_served "$f" "$s"
    okif $? "$* ($((SECONDS - t)) s)" || {
        diag "not served: $(head -3 "$tmp/work/mismatch")"
        diag "status: $(status)"
    }
}
# fresh FILE NAME...: issue the names; FILE gets their "NAME SERIAL"
fresh() {
    local f=$1
    shift
    : >"$tmp/work/want"
    issue "$@" || return 1
    cp "$tmp/work/want" "$f"
    cat "$f" >>"$tmp/work/all"
}
: >"$tmp/work/all"

start_cs
ok "CertService started on 127.0.0.1:$cs_port (real time)"

# --- 1. Two hours ahead ----------------------------------------------------
section "1. The proxy starts 2 h ahead"

set_clock +2h
start_px interval="2 0" \
    extra="CertSyncMinRestartInterval 10" || bail "the proxy did not start"
ok "proxy started under libfaketime: TLS on $px_port, status on $st_port"
wait_for 20 px_idle
okif $? "1: the first cycle ends (state idle)"
ahead=$(px_ahead)
[ "$ahead" -ge 7150 ] && [ "$ahead" -le 7250 ]
okif $? "1: its wall clock is 2 h ahead (last_sync - now = $ahead s)"
fresh "$tmp/work/w1" one.clock.test
served_within "$tmp/work/w1" 40 "1: a domain added is served"

# --- 2. Set right ------------------------------------------------------------
section "2. Set right: 2 h back"

wait_for 30 px_idle
set_clock +0
sleep 1
fresh "$tmp/work/w2" a.clock.test b.clock.test c.clock.test d.clock.test \
    e.clock.test
served_within "$tmp/work/w2" 45 "2: after the clock went 2 h back, 5 new" \
    "domains are served within a few sync intervals"
wait_for 20 px_idle
ns=$(st next_sync)
[ "$ns" -le $(($(date +%s) + 30)) ]
okif $? "2: next_sync is not hours ahead ($((ns - $(date +%s))) s from now)"
ahead=$(px_ahead)
[ "$ahead" -ge -30 ] && [ "$ahead" -le 30 ]
okif $? "2: last_sync is the right time again ($ahead s off)"

# --- 3. A full stop and start with times in the future ------------------------
section "3. Stop, set right, start: state.json holds future times"

set_clock +2h
sleep 1
fresh "$tmp/work/w3" two.clock.test
served_within "$tmp/work/w3" 45 "3: 2 h ahead again, a domain rolled out"
wait_for 20 px_idle
stop_px
okif $? "3: the proxy's httpd stopped"
set_clock +0
now=$(date +%s)
lr=$(jq -r '.last_restart // 0' "$store/state.json")
ns=$(jq -r '.next_sync // 0' "$store/state.json")
[ "$lr" -gt $((now + 3600)) ] && [ "$ns" -gt $((now + 3600)) ]
okif $? "3: state.json holds last_restart and next_sync 2 h ahead" \
    "($((lr - now)) s, $((ns - now)) s)"
c200=$(count_lines CY00200)
start_px_again
okif $? "3: the proxy's httpd started again, its clock right"
fresh "$tmp/work/w3b" f.clock.test g.clock.test h.clock.test
served_within "$tmp/work/w3b" 45 "3: new domains are served within" \
    "CertSyncMinRestartInterval and a few sync intervals"
is "$(($(count_lines CY00200) - c200))" 1 \
    "3: CY00200 logged once: the future last restart was taken as now"
grep 'CY00200' "$pxlog" | tail -1 | cut -c1-220 | while read -r l; do
    diag "$l"
done
wait_for 20 px_idle
s=$(status)
lr=$(jq -r '.last_restart // 0' <<<"$s")
ns=$(jq -r '.next_sync // 0' <<<"$s")
now=$(date +%s)
[ "$lr" -le $((now + 5)) ] && [ "$ns" -le $((now + 30)) ]
okif $? "3: the status shows last_restart and next_sync no longer ahead" \
    "($((lr - now)) s, $((ns - now)) s)"

# --- 4. A day behind ----------------------------------------------------------
section "4. A day behind"

set_clock -1d
sleep 1
: >"$tmp/work/want"
issue j.clock.test
failed_yet() {
    grep -qi 'not yet valid' <<<"$(status | jq -r '.failures["j.clock.test"]')"
}
wait_for 20 failed_yet
okif $? "4: a day behind, a new certificate is not valid yet: skipped," \
    "and the status says why ($(status | jq -r '.failures["j.clock.test"]'))"
wait_served "$tmp/work/all" 10
okif $? "4: what was served is still served (every domain so far)" \
    || diag "$(head -3 "$tmp/work/mismatch")"
set_clock +0
cp "$tmp/work/want" "$tmp/work/w4"
served_within "$tmp/work/w4" 45 "4: set right, the proxy converges alone:" \
    "the skipped domain is retried and served"
# shellcheck disable=SC2016 # expanded by eval, each time
wait_for 20 eval '[ "$(status | jq ".failures | length")" = 0 ]'
okif $? "4: the status lists no failures any more"

crash=$(grep -hE 'exit signal|Segmentation|AH00052' "$pxlog" | head -3)
is "$crash" "" "no httpd child crashed"

diag "$((SECONDS - T0)) s in all"
echo "$npass passed, $nfail failed"
[ "$nfail" = 0 ]
