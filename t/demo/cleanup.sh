#!/bin/bash
# t/demo/cleanup.sh: every way out of build/demo.sh stops the pool and
# removes what holds its keys (make check-demo; part of make check-e2e).
#
# The demo runs in a process group of its own (as from a terminal) with
# TMPDIR set to a directory of this test, so that what it leaves behind is
# told apart from anything else on the machine.  The ways out:
#   1. a failure (DEMO_PORT out of range): exit 1; and a busy port in
#      its range: exit 1 at once, the port and DEMO_PORT named
#   2. Ctrl-C while it starts (SIGINT to the whole process group, pebble
#      included, once pebble runs): exit 0
#   3. SIGTERM to the demo alone while it starts (proxies running): exit 0
#   4. Ctrl-C while it runs (DEMO_ONESHOT=0: the pool up, the demo waiting)
#   5. SIGTERM while it runs
# After each: the status, no certsuite-demo.* directory, no private key
# anywhere below TMPDIR, and no process left that names it.  (The end of a
# DEMO_ONESHOT=1 run, the success path, removes it the same way: the EXIT
# trap of cs_tmpdir; a run takes about 90 s, so it is not repeated here.)
#
# Needs what the demo needs (httpd, HAProxy, pebble, built modules); skips
# without them.  About 3 to 4 minutes.
#   DEMO_CLEANUP_QUICK=1  only cases 1 to 3 (about 40 s)
set -u

top=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=t/lib/pool.sh
. "$top/t/lib/pool.sh"
tap_init

for p in haproxy pebble pebble-challtestsrv curl openssl; do
    command -v "$p" >/dev/null 2>&1 || { echo "1..0 # SKIP $p not found"; exit 0; }
done
for m in proxy_protocol certservice certsync macro_gen; do
    [ -f "$top/mod_$m/.libs/mod_$m.so" ] \
        || { echo "1..0 # SKIP mod_$m not built (make)"; exit 0; }
done

# The demo's TMPDIR: readable by httpd's children (nobody).  Removed by
# this script's own EXIT trap with whatever a failing case left in it.
root=$(mktemp -d "${TMPDIR:-/tmp}/certsuite-demo-test.XXXXXX") \
    || bail "mktemp failed"
chmod 755 "$root"
demo_pid=
leftovers() { # the processes started with TMPDIR=$root (the demo's)
    local e pid
    for e in /proc/[0-9]*/environ; do
        pid=${e#/proc/}
        pid=${pid%/environ}
        if [ "$pid" = $$ ] || [ "$pid" = "$BASHPID" ]; then
            continue
        fi
        if { tr '\0' '\n' <"$e"; } 2>/dev/null | grep -qxF "TMPDIR=$root"
        then
            echo "$pid"
        fi
    done
}
finish() {
    local pid
    if [ -n "$demo_pid" ] && kill -0 "$demo_pid" 2>/dev/null; then
        kill -TERM -- "-$demo_pid" 2>/dev/null
        sleep 5
        kill -KILL -- "-$demo_pid" 2>/dev/null
    fi
    # What a failed case left running: ours by its environment.
    for pid in $(leftovers); do
        kill -TERM "$pid" 2>/dev/null
    done
    rm -rf "$root"
}
trap finish EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
# Job control: each background job in a process group of its own, with
# SIGINT not ignored (as a command started from a terminal).
set -m

# run_demo CASE ENV...: the demo in the background, output in $root/CASE.log
run_demo() {
    local name=$1
    shift
    # SIGINT as a terminal leaves it: not ignored, even when this test
    # runs in the background (which ignores it for its children).
    # shellcheck disable=SC2016
    # (CERTSUITE_KEEP is the demo's way to keep its folder: not here,
    # where what it leaves is the point.)
    env -u CERTSUITE_KEEP DEMO_INSTALL_DEPS=0 TMPDIR="$root" "$@" \
        perl -e '$SIG{INT} = $SIG{TERM} = "DEFAULT"; exec @ARGV or die' \
        "$top/build/demo.sh" >"$root/$name.log" 2>&1 </dev/null &
    demo_pid=$!
}

# wait_line CASE REGEX SECONDS: until the demo's output has a line matching
# REGEX; status 1 if the demo ends or time runs out first
wait_line() {
    local i
    for ((i = 0; i < $3 * 5; i++)); do
        grep -qE "$2" "$root/$1.log" 2>/dev/null && return 0
        kill -0 "$demo_pid" 2>/dev/null || return 1
        sleep 0.2
    done
    return 1
}

# wait_demo SECONDS: the demo's exit status once it ended (124 if it did
# not end in time)
wait_demo() {
    local i
    for ((i = 0; i < $1 * 5; i++)); do
        kill -0 "$demo_pid" 2>/dev/null || break
        sleep 0.2
    done
    if kill -0 "$demo_pid" 2>/dev/null; then
        return 124
    fi
    wait "$demo_pid"
}

# check CASE STATUS WANT: the exit status, and nothing left behind
check() {
    local name=$1 rc=$2 want=$3 i left keys dirs
    is "$rc" "$want" "$name: exit status $want"
    dirs=$(find "$root" -mindepth 1 -maxdepth 1 -name 'certsuite-demo.*')
    keys=$(find "$root" \( -name privkey.pem -o -name '*.key' \) 2>/dev/null)
    is "$dirs$keys" "" "$name: no certsuite-demo.* directory, no private key left" \
        || diag "$(tail -n 20 "$root/$name.log")"
    # Sync daemons stop within a second or two of their parent.
    for ((i = 0; i < 25; i++)); do
        left=$(leftovers)
        [ -z "$left" ] && break
        sleep 0.2
    done
    is "$left" "" "$name: no process of the demo left" \
        || diag "$(ps -o pid,args -p "${left//$'\n'/,}" 2>/dev/null)"
    demo_pid=
}

# signal_case CASE SIGNAL group|pid REGEX SECONDS ENV...: start the demo,
# wait for a line matching REGEX, send SIGNAL, check what is left
signal_case() {
    local name=$1 sig=$2 to=$3 re=$4 secs=$5 base rc
    shift 5
    base=$(pool_pick_base) || bail "no free ports"
    run_demo "$name" DEMO_PORT="$base" "$@"
    if ! wait_line "$name" "$re" "$secs"; then
        notok "$name: the demo got to '$re'"
        diag "$(tail -n 20 "$root/$name.log")"
    fi
    if [ "$to" = group ]; then
        kill "-$sig" -- "-$demo_pid" 2>/dev/null
    else
        kill "-$sig" "$demo_pid" 2>/dev/null
    fi
    wait_demo 60
    rc=$?
    if [ "$rc" = 124 ]; then # where it is stuck, before check stops it
        diag "the demo still runs 60 s after SIG$sig; it and its children:"
        diag "$(ps -o pid,stat,wchan:24,args -p "$demo_pid" \
                   --ppid "$demo_pid" 2>/dev/null)"
        diag "$(cat "/proc/$demo_pid/stack" 2>/dev/null)"
    fi
    check "$name" "$rc" 0
}

section "1. a failure"
run_demo failure DEMO_PORT=1 DEMO_ONESHOT=1
wait_demo 60
check failure $? 1

section "1b. a busy port: named before anything starts"
base=$(pool_pick_base) || bail "no free ports"
# A listener on DEMO_PORT+7 (a proxy's status port would go there).
python3 -c 'import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(1); time.sleep(60)' \
    $((base + 7)) &
busy_pid=$!
wait_port $((base + 7)) 5 || diag "the test's listener did not start"
t_busy=$SECONDS
run_demo busy-port DEMO_PORT="$base" DEMO_ONESHOT=1
wait_demo 30
rc=$?
t_busy=$((SECONDS - t_busy))
check busy-port "$rc" 1
kill "$busy_pid" 2>/dev/null
wait "$busy_pid" 2>/dev/null
grep -q "demo: port $((base + 7)) (DEMO_PORT+7, DEMO_PORT=$base) is in use" \
    "$root/busy-port.log"
okif $? "busy-port: the port and DEMO_PORT are named" \
    || diag "$(cat "$root/busy-port.log")"
[ "$t_busy" -lt 10 ] && ! grep -q 'pebble\|CertService' "$root/busy-port.log"
okif $? "busy-port: nothing was started first (the demo took $t_busy s)" \
    || diag "$(cat "$root/busy-port.log")"

section "2. Ctrl-C (SIGINT to the process group) while it starts"
signal_case ctrl-c-starting INT group '^ *[0-9.]+s +CertService ' 90 \
    DEMO_ONESHOT=0

section "3. SIGTERM to the demo while it starts"
signal_case term-starting TERM pid '^ *[0-9.]+s +proxy2 ' 120 \
    DEMO_ONESHOT=0

if [ -z "${DEMO_CLEANUP_QUICK:-}" ]; then
    section "4. Ctrl-C while it runs"
    signal_case ctrl-c-running INT group 'running: try the commands' 240 \
        DEMO_ONESHOT=0
    section "5. SIGTERM while it runs"
    signal_case term-running TERM pid 'running: try the commands' 240 \
        DEMO_ONESHOT=0
fi

echo "1..$n"
echo "$npass passed, $nfail failed"
[ "$nfail" = 0 ]
