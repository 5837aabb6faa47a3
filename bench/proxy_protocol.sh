#!/bin/bash
#
# bench/proxy_protocol.sh: what does mod_proxy_protocol cost?
#
# 1. Parser micro-benchmark (bench/pp_parse_bench.c): ns per header for a v1
#    header, a v2 IPv4 header and a v2 header with TLVs, then instructions
#    per header counted by callgrind.
# 2. The same HTTP workload through HAProxy (TCP mode) to three Apache
#    instances that differ only in how they learn the client address:
#      (a) plain      haproxy without send-proxy, Apache without PROXY support
#      (b) remoteip   haproxy send-proxy, mod_remoteip RemoteIPProxyProtocol On
#      (c) module     haproxy send-proxy, mod_proxy_protocol (ProxyProtocol On,
#                     ProxyProtocolTrustedProxies 127.0.0.1)
#    Workloads:
#      close      Connection: close, so every request is a new connection and
#                 carries a PROXY header: the worst case for the module
#      keepalive  wrk's usual keep-alive connections: one header per
#                 connection, so no difference is expected
#      direct     (optional, not in the default WORKLOADS) like close but
#                 without haproxy: wrk itself writes the PROXY header and
#                 the request in one segment, to (b) and (c); (a) gets the
#                 bare request.  Without haproxy's load, Apache is more
#                 likely to be the bottleneck, and sees exactly one
#                 segment per connection either way.
#      tls        the deployment the module is for: haproxy in TCP mode
#                 passes TLS through and Apache terminates it (mod_ssl, a
#                 self-signed ECDSA P-256 certificate made in the temporary
#                 directory, default protocols, so TLS 1.3).  Each instance
#                 has a TLS virtual host on its own port, with its own
#                 haproxy frontend (send-proxy for (b) and (c)).  wrk sends
#                 Connection: close, so every request is a new connection
#                 with a full handshake: wrk would resume its session on
#                 every reconnect, so the server has no session cache
#                 (SSLSessionCache none) and no tickets (SSLSessionTickets
#                 off); the script checks with openssl s_client that a
#                 session is not resumed.
#      tls-keepalive  (optional) like tls, but with keep-alive connections
#    mod_ssl is loaded (in all three instances) only when a tls workload is
#    chosen.
#    Runs are interleaved (a b c, b c a, c a b, ...: ORDER) for ROUNDS
#    rounds and the median is reported, since the machine is small and
#    shared.  Besides wrk's
#    req/s and p99, the CPU time Apache used per request is reported (from
#    /proc/PID/task/*/schedstat): the least noisy of the three.  So are
#    haproxy's CPU time per request (the same way) and how busy the CPU
#    that wrk and haproxy share was (client CPU, from /proc/stat): near
#    100 %, req/s is limited by the client side, not by Apache.
# 3. Cost per connection in Apache, counted rather than timed, so not
#    disturbed by the noise that part 2 suffers from.  ab sends
#    COUNT_CONNECTIONS requests through haproxy, one per connection:
#    - syscalls: perf counts raw_syscalls:sys_enter of every Apache thread
#      (needs perf, and root or kernel.perf_event_paranoid=-1; else "-");
#    - instructions: each instance in turn runs as a single process (-X)
#      under callgrind, counting only inside the pre_connection and
#      process_connection hooks (PROXY header, request and response; user
#      space only).
#    Plain HTTP only, also when a tls workload is chosen (mod_ssl is then
#    loaded in all three instances, which adds about 270 Ir per plain
#    connection to each).
# 4. (PERCONN=1; not in the default run) Apache's CPU per connection,
#    with and without the PROXY protocol, settled on a noisy machine:
#    PERCONN_ROUNDS rounds, each running (a) and (c) back to back, in
#    alternating order ((a) (c), then (c) (a), ...), each run ab sending
#    PERCONN_CONNECTIONS requests, one per connection, PERCONN_CONCURRENCY
#    at a time, through haproxy.  The CPU time is that of the httpd
#    children only (every thread of each child, from
#    /proc/PID/task/TID/schedstat: nanoseconds on a CPU), not the parent's
#    (its once-a-second maintenance is not per connection).  Reported: the
#    median and interquartile range of each variant's us/connection and of
#    the per-round ratio (c)/(a), a 95 % bootstrap interval of that
#    median, and the verdict on "within 2 %": MET or NOT MET only when
#    the interval settles it, else NOT SETTLED.  Then the
#    system calls per connection of each, counted by strace -c -f attached
#    to the children for PERCONN_STRACE_CONNECTIONS connections (a table
#    per syscall, (a) beside (c)).  The load average before and after is
#    printed: the ratio is what counts, absolute figures are low on a
#    shared machine.
#    PERCONN_SENDER=direct replaces ab and haproxy by bench/pp_conn_client.c
#    (built here): it connects straight to Apache and sends, in one
#    write(), the PROXY v1 header and the request to (c), the request
#    alone to (a), so that both get one segment from a sender doing the
#    same work.  haproxy 2.6 in TCP mode writes the header in a segment
#    of its own as soon as it has connected (also with
#    HAPROXY_WAIT_DATA=1: 2 segments more per connection, counted with
#    nstat), and spends more CPU per connection on it.
#    DIRECT_SEGMENTS=as-haproxy makes the direct sender do the same (the
#    header, then the request, two segments to (c), one to (a));
#    DIRECT_SEGMENTS=two gives either port two segments.  The listener
#    threads' wake-ups a connection are reported with their CPU: with
#    several connections in flight one wake-up can serve several.
# 5. (PATHTIME=1; not in the default run) The time of a connection's
#    path through Apache, measured inside it by bench/mod_pp_path_timing.c
#    (built here and loaded into every variant, so that parts 2-4 of the
#    same run include its small cost equally): per connection, from the
#    first pre_connection hook to the end of the post_read_request hooks
#    ("read": all of mod_proxy_protocol's work, and the core's reading of
#    the request), and from there to log_transaction ("serve").  (a) and
#    (c) alternate for PATHTIME_ROUNDS rounds of PATHTIME_CONNECTIONS
#    connections, one at a time (so the worker has the CPU to itself and
#    the wall time is its CPU time), sent as part 4 sends them
#    (PERCONN_SENDER).  Reported: each round's median of "read" and
#    "serve" per variant, their medians over the rounds, the per-round
#    difference (c) - (a), and the CPU of the children per connection in
#    the same runs, for scale.  Unlike part 4, a median over thousands of
#    connections hardly moves with the machine's other load.
#
# Targets (from the issue): (c) req/s within 2% of (a), and not below (b).
#
# Everything listens on 127.0.0.1 only, in a temporary directory, and is
# stopped on exit.  Works as root (Apache then runs as $SUDO_USER or nobody)
# or as a normal user.
#
# Usage: bench/proxy_protocol.sh        (run from anywhere; build first: make)
#
# Environment (defaults in brackets):
#   DURATION      seconds per measured run [3]
#   ROUNDS        interleaved rounds per workload [5 for close, keepalive
#                 and direct, 7 for tls and tls-keepalive]
#   CONNECTIONS   wrk connections [32]
#   WARMUP        seconds of unmeasured load per instance and workload [2]
#   WORKLOADS     any of close, keepalive, direct, tls, tls-keepalive
#                 [close keepalive tls]
#   PROXY_VERSION 1 (send-proxy) or 2 (send-proxy-v2) [1]
#   HAPROXY_WAIT_DATA
#                 1: every haproxy frontend, (a), (b) and (c) alike, waits
#                 for the client's first bytes before it connects to Apache
#                 ("tcp-request inspect-delay 5s" and "tcp-request content
#                 accept if { req.len gt 0 }"), so the PROXY header and the
#                 request (or ClientHello) reach Apache back to back.  By
#                 default (0) haproxy in TCP mode connects as soon as the
#                 client does and writes the PROXY header at once, so
#                 Apache's accept (TCP_DEFER_ACCEPT) can wake on the
#                 header alone and a worker then waits for the request,
#                 which (a), without a header, never does.  (Seen with one
#                 request at a time; under this script's load it happens
#                 on fewer than 1 connection in 200: docs/benchmarks.md.)
#                 [0]
#   APACHE_CPU_QUOTA
#                 N (an integer, percent of one CPU, e.g. 40): cap each
#                 Apache instance, (a), (b) and (c) alike, at N % of one CPU
#                 with cgroup v1's cpu controller: one cgroup per instance,
#                 /sys/fs/cgroup/cpu/ppbench.PID.V, cpu.cfs_period_us
#                 100000 and cpu.cfs_quota_us N*1000.  The parent is moved
#                 in as soon as it starts, and every process of the
#                 instance (parent and children; children forked later
#                 inherit the cgroup) once it answers; the script checks
#                 that each one is in the cgroup, and removes the cgroups
#                 on exit.  Needs root and a writable /sys/fs/cgroup/cpu,
#                 and fails otherwise.
#                 Why: by default, on a 2-CPU machine, the close workload
#                 is client-bound (the CPU of wrk and haproxy ~97-98 %
#                 busy, Apache's below 85 %), and haproxy itself costs
#                 more per request when it sends a PROXY header, so the
#                 req/s ratios measure the load generator more than
#                 Apache.  With the quota Apache saturates first: req/s is
#                 then N % of a CPU divided by Apache's CPU time per
#                 request, and the ratios compare what each Apache variant
#                 costs per request.
#                 Check it in the output: "httpd CPU" should be ~N % in
#                 every variant and round, the extra "throttled" column
#                 (share of the cgroup's 100 ms periods in which the quota
#                 ran out) high, and "client CPU" well below 100 %.  A
#                 quota above what Apache can get on its CPU (other load)
#                 is not reached: "httpd CPU" below N % and "throttled"
#                 near 0 % show such rounds.  On the tls workloads "client
#                 CPU" stays ~100 % whatever the quota (wrk itself used
#                 93 % of CPU 0 at 220 req/s, apparently polling the
#                 connections whose handshakes wait for Apache); there,
#                 req/s proportional to N and httpd CPU at N % show that
#                 Apache is the bottleneck.  Throttling stops Apache for
#                 the rest of a period, so p99 then mostly reflects the
#                 quota (tens of ms), not the module.  Applies to part 2
#                 (and to the running instances during part 3's syscall
#                 count; part 3's callgrind instance is not capped).
#                 [unset: no cap]
#   ORDER         rotate: round N runs the variants rotated by N - 1 (a b c,
#                 b c a, c a b, ...), so that none is always the first or
#                 the last of a round; fixed: a b c in every round (runs
#                 before the fifth session) [rotate]
#   BASE_PORT     Apache on BASE_PORT+1..3 (TLS: +21..23), haproxy on
#                 BASE_PORT+11..13 (TLS: +31..33) [18080]
#   PIN           1: Apache on APACHE_CPUS, wrk+haproxy on CLIENT_CPUS
#                 [1 if there are 2 CPUs or more]
#   APACHE_CPUS   [1]       CLIENT_CPUS [0]      WRK_THREADS [1]
#   MICRO, MACRO, COUNTS
#                 0 skips part 1, part 2, part 3 [1]
#   PERCONN       1 runs part 4 [0]
#   PERCONN_ROUNDS [41]  PERCONN_CONNECTIONS [1000]
#   PERCONN_CONCURRENCY [4]  PERCONN_STRACE_CONNECTIONS [500]
#   PERCONN_SENDER  haproxy: ab through haproxy; direct: pp_conn_client
#                 straight to Apache (see part 4), for parts 4 and 5
#                 [haproxy]
#   DIRECT_SEGMENTS with PERCONN_SENDER=direct, what Apache receives: one:
#                 one segment on either port, the header and the request
#                 written together; two: two on either port, the header
#                 then the request to (c), the request cut where the
#                 header would end to (a); as-haproxy: two to (c), one to
#                 (a), the segments haproxy sends [one]
#   DIRECT_HOLD_US  with PERCONN_SENDER=direct, how long the sender keeps
#                 each connection open after Apache's close, as haproxy
#                 does until its client has closed (Apache's lingering
#                 close then goes to the listener thread) [0]
#   PATHTIME      1 runs part 5 [0]
#   PATHTIME_ROUNDS [10]  PATHTIME_CONNECTIONS [2000]
#   PERCONN_PERF  1: with PERCONN=1, after part 4: perf records the
#                 listener threads of (a) and (c) (task-clock, kernel and
#                 user) during PERCONN_PERF_CONNECTIONS [20000]
#                 connections each, and prints their CPU a connection by
#                 symbol, side by side [0]
#   PERCONN_TRACE 1: with PERCONN=1, after part 4: perf stat counts, over
#                 PERCONN_PERF_CONNECTIONS connections each, what the
#                 kernel does in the listener threads of (a) and (c):
#                 packets received and sent in their context, their
#                 context switches and system calls [0]
#   SAME_INSTANCE 1: (a) and (c) are two ports of one Apache, the PROXY
#                 protocol on in a <VirtualHost> of (c)'s port only, so that
#                 part 4 compares them on the same processes and threads
#                 (two identical instances differ by 1 to 2.6 % in part 4
#                 on this kind of machine); (a) then has the module loaded,
#                 its hooks declining on (a)'s port (tens of ns); parts 4
#                 and 4b only, without (b) and TLS.  aa: the same, but
#                 (c)'s port without the PROXY protocol either (no header
#                 is sent to it): an A/A control of the method, its ratio
#                 should be 1 [0]
#   PERCONN_NICE  N: renice Apache's threads (both instances) to N for
#                 part 4, e.g. -10, so that the other jobs of a shared
#                 machine preempt them less [unset]
#   COUNT_CONNECTIONS  connections per instance in part 3 [2000]
#   HTTPD [/usr/sbin/apache2]  MODULES_DIR [/usr/lib/apache2/modules]
#   HAPROXY [haproxy]  WRK [wrk]  CC [cc]  OPENSSL [openssl]
#   CERTSUITE_KEEP=1 keeps the temporary dir
#
set -eu

DURATION=${DURATION:-3}
ROUNDS=${ROUNDS:-}
CONNECTIONS=${CONNECTIONS:-32}
WARMUP=${WARMUP:-2}
WORKLOADS=${WORKLOADS:-close keepalive tls}
PROXY_VERSION=${PROXY_VERSION:-1}
HAPROXY_WAIT_DATA=${HAPROXY_WAIT_DATA:-0}
BASE_PORT=${BASE_PORT:-18080}
PIN=${PIN:-$([ "$(nproc)" -ge 2 ] && echo 1 || echo 0)}
APACHE_CPUS=${APACHE_CPUS:-1}
CLIENT_CPUS=${CLIENT_CPUS:-0}
WRK_THREADS=${WRK_THREADS:-1}
MICRO=${MICRO:-1}
MACRO=${MACRO:-1}
COUNTS=${COUNTS:-1}
COUNT_CONNECTIONS=${COUNT_CONNECTIONS:-2000}
PERCONN=${PERCONN:-0}
PERCONN_ROUNDS=${PERCONN_ROUNDS:-41}
PERCONN_CONNECTIONS=${PERCONN_CONNECTIONS:-1000}
PERCONN_CONCURRENCY=${PERCONN_CONCURRENCY:-4}
PERCONN_STRACE_CONNECTIONS=${PERCONN_STRACE_CONNECTIONS:-500}
PERCONN_NICE=${PERCONN_NICE:-}
PERCONN_PERF=${PERCONN_PERF:-0}
PERCONN_TRACE=${PERCONN_TRACE:-0}
SAME_INSTANCE=${SAME_INSTANCE:-0}
PERCONN_PERF_CONNECTIONS=${PERCONN_PERF_CONNECTIONS:-20000}
PERCONN_SENDER=${PERCONN_SENDER:-haproxy}
DIRECT_SEGMENTS=${DIRECT_SEGMENTS:-one}
DIRECT_HOLD_US=${DIRECT_HOLD_US:-0}
PATHTIME=${PATHTIME:-0}
PATHTIME_ROUNDS=${PATHTIME_ROUNDS:-10}
PATHTIME_CONNECTIONS=${PATHTIME_CONNECTIONS:-2000}
HTTPD=${HTTPD:-/usr/sbin/apache2}
MODULES_DIR=${MODULES_DIR:-/usr/lib/apache2/modules}
HAPROXY=${HAPROXY:-haproxy}
WRK=${WRK:-wrk}
CC=${CC:-cc}
OPENSSL=${OPENSSL:-openssl}
APACHE_CPU_QUOTA=${APACHE_CPU_QUOTA:-}
ORDER=${ORDER:-rotate}
CGROUP_CPU=/sys/fs/cgroup/cpu

case $ORDER in
rotate|fixed) ;;
*) echo "proxy_protocol.sh: ORDER must be rotate or fixed" >&2; exit 1 ;;
esac
case $HAPROXY_WAIT_DATA in
0|1) ;;
*) echo "proxy_protocol.sh: HAPROXY_WAIT_DATA must be 0 or 1" >&2; exit 1 ;;
esac
case $PERCONN_SENDER in
haproxy|direct) ;;
*) echo "proxy_protocol.sh: PERCONN_SENDER must be haproxy or direct" >&2
   exit 1 ;;
esac
case $DIRECT_SEGMENTS in
one) ;;
two|as-haproxy)
    [ "$PERCONN_SENDER" = direct ] || {
        echo "proxy_protocol.sh: DIRECT_SEGMENTS=$DIRECT_SEGMENTS needs" \
            "PERCONN_SENDER=direct" >&2; exit 1; } ;;
*) echo "proxy_protocol.sh: DIRECT_SEGMENTS must be one, two or as-haproxy" >&2
   exit 1 ;;
esac
case $DIRECT_HOLD_US in
0) ;;
*[!0-9]*|'') echo "proxy_protocol.sh: DIRECT_HOLD_US must be a number of" \
        "microseconds" >&2; exit 1 ;;
*) [ "$PERCONN_SENDER" = direct ] || {
        echo "proxy_protocol.sh: DIRECT_HOLD_US needs PERCONN_SENDER=direct" >&2
        exit 1; } ;;
esac
case $SAME_INSTANCE in
0) ;;
1|aa) if [ "$MICRO$MACRO$COUNTS$PATHTIME" != 0000 ] || [ "$PERCONN" != 1 ] \
       || [ "$WORKLOADS" != close ] || [ -n "$APACHE_CPU_QUOTA" ]; then
       echo "proxy_protocol.sh: SAME_INSTANCE=$SAME_INSTANCE is for part 4" \
           "only: MICRO=0 MACRO=0 COUNTS=0 PATHTIME=0 PERCONN=1" \
           "WORKLOADS=close, no APACHE_CPU_QUOTA" >&2
       exit 1
   fi ;;
*) echo "proxy_protocol.sh: SAME_INSTANCE must be 0, 1 or aa" >&2; exit 1 ;;
esac

# APACHE_CPU_QUOTA: checked before anything starts.
if [ -n "$APACHE_CPU_QUOTA" ]; then
    if ! [[ $APACHE_CPU_QUOTA =~ ^[1-9][0-9]*$ ]] \
        || [ "$APACHE_CPU_QUOTA" -gt $((100 * $(nproc))) ]; then
        echo "proxy_protocol.sh: APACHE_CPU_QUOTA must be a whole percentage" \
            "of one CPU, 1 to $((100 * $(nproc)))" >&2
        exit 1
    fi
    if [ "$(id -u)" != 0 ]; then
        echo "proxy_protocol.sh: APACHE_CPU_QUOTA needs root (it creates" \
            "cgroups in $CGROUP_CPU); run as root or unset APACHE_CPU_QUOTA" >&2
        exit 1
    fi
    if [ ! -w "$CGROUP_CPU" ] || [ ! -f "$CGROUP_CPU/cpu.cfs_quota_us" ]; then
        echo "proxy_protocol.sh: APACHE_CPU_QUOTA needs cgroup v1's cpu" \
            "controller mounted writable at $CGROUP_CPU (with" \
            "cpu.cfs_quota_us); not found here, unset APACHE_CPU_QUOTA" >&2
        exit 1
    fi
fi

TLS=0           # 1: a tls workload is chosen, so Apache terminates TLS too
for w in $WORKLOADS; do
    case $w in
    close|keepalive|direct) ;;
    tls|tls-keepalive) TLS=1 ;;
    *) echo "proxy_protocol.sh: unknown workload '$w'" \
            "(close, keepalive, direct, tls, tls-keepalive)" >&2; exit 1 ;;
    esac
done

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

TOP=$(cd "$(dirname "$0")/.." && pwd)
MODULE_SO=${MODULE_SO:-$TOP/mod_proxy_protocol/.libs/mod_proxy_protocol.so}

VARIANTS="a b c"
[ "$SAME_INSTANCE" = 0 ] || VARIANTS="a c"
declare -A LABEL=([a]="(a) no PROXY" [b]="(b) mod_remoteip"
                  [c]="(c) mod_proxy_protocol")
[ "$SAME_INSTANCE" != aa ] || LABEL[c]="(c) no PROXY, 2nd port"
declare -A APACHE_PORT=([a]=$((BASE_PORT + 1)) [b]=$((BASE_PORT + 2))
                        [c]=$((BASE_PORT + 3)))
declare -A FRONT_PORT=([a]=$((BASE_PORT + 11)) [b]=$((BASE_PORT + 12))
                       [c]=$((BASE_PORT + 13)))
declare -A APACHE_TLS_PORT=([a]=$((BASE_PORT + 21)) [b]=$((BASE_PORT + 22))
                            [c]=$((BASE_PORT + 23)))
declare -A FRONT_TLS_PORT=([a]=$((BASE_PORT + 31)) [b]=$((BASE_PORT + 32))
                           [c]=$((BASE_PORT + 33)))
declare -A APACHE_PID=()
declare -A CGROUP=()    # APACHE_CPU_QUOTA: each instance's cgroup directory
HAPROXY_PID=""
PIDS=""
# forget_pid PID: off PIDS once waited for (the cleanup must not signal
# whatever process gets the number next)
forget_pid() {
    PIDS=" $PIDS "
    PIDS=${PIDS// $1 / }
}

# die, cs_tmpdir, cs_cleanup, stop_pids
# shellcheck source=../t/lib/certsuite.sh
. "$TOP/t/lib/certsuite.sh"

# ---------------------------------------------------------------------------
# Setup and cleanup
# ---------------------------------------------------------------------------

cs_tmpdir ppbench || die "mktemp failed"
WORK=$tmp
chmod 755 "$WORK"       # Apache's children may run as another user

on_cleanup() {
    # shellcheck disable=SC2086
    stop_pids $PIDS
    remove_cgroups
}

# Command prefixes that pin to the chosen CPUs (empty when PIN=0).  Plain
# prefixes, not a shell function, so that "$! of cmd &" is the server itself.
ON_APACHE_CPUS=()
ON_CLIENT_CPUS=()
if [ "$PIN" = 1 ]; then
    ON_APACHE_CPUS=(taskset -c "$APACHE_CPUS")
    ON_CLIENT_CPUS=(taskset -c "$CLIENT_CPUS")
fi

# APACHE_CPU_QUOTA: one cgroup v1 cpu cgroup per Apache instance.
cgroup_create() {   # cgroup_create V
    local v=$1 dir=$CGROUP_CPU/ppbench.$$.$1
    mkdir "$dir" || die "APACHE_CPU_QUOTA: cannot create $dir"
    CGROUP[$v]=$dir
    echo 100000 >"$dir/cpu.cfs_period_us" \
        && echo $((APACHE_CPU_QUOTA * 1000)) >"$dir/cpu.cfs_quota_us" \
        || die "APACHE_CPU_QUOTA: cannot set the quota of $dir"
}

# Moves PIDS into V's cgroup (a process that has gone is skipped).
cgroup_add() {   # cgroup_add V PID...
    local v=$1 pid
    shift
    for pid in "$@"; do
        echo "$pid" >"${CGROUP[$v]}/cgroup.procs" 2>/dev/null \
            || ! kill -0 "$pid" 2>/dev/null \
            || die "APACHE_CPU_QUOTA: cannot move $pid into ${CGROUP[$v]}"
    done
}

# Moves every process of instance V into its cgroup and checks that each
# one (and so each of its threads) is there.  Sets CGROUP_NPROCS to how
# many processes.
CGROUP_NPROCS=0
cgroup_add_instance() {   # cgroup_add_instance V
    local v=$1 parent=${APACHE_PID[$1]} pids pid cg n=0
    pids="$parent $(pgrep -P "$parent" | tr '\n' ' ')"
    cgroup_add "$v" $pids
    for pid in $pids; do
        cg=$(awk -F: '$2 ~ /(^|,)cpu(,|$)/ { print $3 }' /proc/"$pid"/cgroup)
        [ "$CGROUP_CPU$cg" = "${CGROUP[$v]}" ] \
            || die "APACHE_CPU_QUOTA: process $pid of ${LABEL[$v]} is in" \
                "cpu cgroup '$cg', not ${CGROUP[$v]}"
        n=$((n + 1))
    done
    CGROUP_NPROCS=$n
}

# "PERIODS THROTTLED" so far of V's cgroup (cpu.stat), or "0 0".
cgroup_throttling() {   # cgroup_throttling V
    if [ -n "$APACHE_CPU_QUOTA" ] && [ -n "${CGROUP[$1]:-}" ]; then
        awk '$1 == "nr_periods" { p = $2 } $1 == "nr_throttled" { t = $2 }
             END { print p + 0, t + 0 }' "${CGROUP[$1]}/cpu.stat"
    else
        echo 0 0
    fi
}

# On exit, once the servers are stopped: Apache's children may outlive the
# parent for a moment, so wait until each cgroup is empty.
remove_cgroups() {
    local v dir
    for v in "${!CGROUP[@]}"; do
        dir=${CGROUP[$v]}
        [ -d "$dir" ] || continue
        for _ in $(seq 50); do
            rmdir "$dir" 2>/dev/null && break
            sleep 0.2
        done
        [ ! -d "$dir" ] || echo "proxy_protocol.sh: could not remove" \
            "cgroup $dir (processes: $(tr '\n' ' ' <"$dir/cgroup.procs"))" >&2
    done
}

# Median of the numbers on stdin (mean of the middle two for an even count).
median() {
    sort -g | awk '{ v[NR] = $1 }
        END { if (NR == 0) print "nan";
              else if (NR % 2) print v[(NR + 1) / 2];
              else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# ---------------------------------------------------------------------------
# 1. Parser micro-benchmark
# ---------------------------------------------------------------------------

micro_benchmark() {
    local bench=$WORK/pp_parse_bench iters=10000 c m out ir

    echo "== Parser micro-benchmark (pp_header_parse) =="
    (cd "$TOP" && "$CC" -O2 -I mod_proxy_protocol bench/pp_parse_bench.c \
        mod_proxy_protocol/pp_parse.c mod_proxy_protocol/pp_cidr.c \
        -o "$bench")
    echo "ns per header: median of 15 batches of ~20 ms, and the fastest;"
    echo "'calls' is how many parser calls mod_proxy_protocol makes per header"
    echo "(it parses again after each read of the bytes the parser asks for)."
    echo
    "${ON_APACHE_CPUS[@]}" "$bench"
    echo
    if ! command -v valgrind >/dev/null; then
        echo "(valgrind not found: no instruction counts)"
        return
    fi
    echo "instructions (Ir) per header, callgrind, only inside pp_header_parse"
    echo "(--toggle-collect), $iters headers per case:"
    printf '%-6s %12s %12s\n' header oneshot incremental
    for c in v1 v2 v2tlv; do
        printf '%-6s' "$c"
        for m in oneshot incremental; do
            out=$WORK/callgrind.$c.$m
            valgrind -q --tool=callgrind --toggle-collect=pp_header_parse \
                --callgrind-out-file="$out" "$bench" "$c" "$m" "$iters"
            ir=$(awk '/^totals:/ { print $2 }' "$out")
            printf ' %12.0f' "$(awk -v t="$ir" -v n="$iters" \
                'BEGIN { print t / n }')"
        done
        echo
    done
    echo
}

# ---------------------------------------------------------------------------
# 2. HTTP benchmark: configuration
# ---------------------------------------------------------------------------

check_tools() {
    local t v port ports
    for t in "$HTTPD" "$HAPROXY" "$WRK" curl taskset awk ss; do
        command -v "$t" >/dev/null || die "$t not found"
    done
    [ -f "$MODULE_SO" ] || die "$MODULE_SO not found: run make first"
    [ -f "$MODULES_DIR/mod_remoteip.so" ] \
        || die "$MODULES_DIR/mod_remoteip.so not found"
    if [ "$TLS" = 1 ]; then
        command -v "$OPENSSL" >/dev/null || die "$OPENSSL not found"
        [ -f "$MODULES_DIR/mod_ssl.so" ] \
            || die "$MODULES_DIR/mod_ssl.so not found"
    fi
    for v in $VARIANTS; do
        ports="${APACHE_PORT[$v]} ${FRONT_PORT[$v]}"
        [ "$TLS" = 0 ] \
            || ports="$ports ${APACHE_TLS_PORT[$v]} ${FRONT_TLS_PORT[$v]}"
        for port in $ports; do
            if ss -Hltn "sport = :$port" | grep -q .; then
                die "port $port is in use (set BASE_PORT)"
            fi
        done
    done
}

# The user Apache's workers run as: when started as root, the invoking
# user (sudo) or nobody; otherwise whoever runs this.
run_user() {
    if [ "$(id -u)" != 0 ]; then
        id -un
    elif [ -n "${SUDO_USER:-}" ] && [ "$SUDO_USER" != root ]; then
        echo "$SUDO_USER"
    else
        echo nobody
    fi
}

# User/Group lines: only meaningful (and needed) when started as root.
user_directives() {
    [ "$(id -u)" = 0 ] || return 0
    printf 'User %s\nGroup %s\n' "$(run_user)" "$(id -gn "$(run_user)")"
}

write_apache_conf() {
    local v=$1 dir=$WORK/httpd-$1
    mkdir -p "$dir"
    chmod 755 "$dir"
    {
        cat <<EOF
ServerRoot "$dir"
ServerName 127.0.0.1
Listen 127.0.0.1:${APACHE_PORT[$v]}
PidFile "$dir/httpd.pid"
DefaultRuntimeDir "$dir"
ErrorLog "$dir/error.log"
LogLevel warn
$(user_directives)

LoadModule mpm_event_module "$MODULES_DIR/mod_mpm_event.so"
LoadModule authz_core_module "$MODULES_DIR/mod_authz_core.so"
$([ "$PATHTIME" = 0 ] || echo "LoadModule pp_path_timing_module \"$WORK/mod_pp_path_timing.so\"")

# The same MPM configuration for all three: every worker started up front,
# none stopped or replaced while measuring, and far more workers than wrk
# has connections (with Connection: close, connections that haproxy has
# opened but not yet written to also hold a worker).
StartServers            2
ServerLimit             2
ThreadLimit             64
ThreadsPerChild         64
MaxRequestWorkers       128
MinSpareThreads         8
MaxSpareThreads         128
MaxConnectionsPerChild  0
KeepAlive               On
MaxKeepAliveRequests    0
KeepAliveTimeout        30
Timeout                 30

DocumentRoot "$WORK/htdocs"
<Directory "$WORK/htdocs">
    Require all granted
</Directory>
EOF
        # The TLS virtual host inherits everything above and the PROXY
        # directives below (they are server-wide).  No session cache and no
        # tickets: every connection is a full handshake.
        [ "$TLS" = 0 ] || cat <<EOF

LoadModule ssl_module "$MODULES_DIR/mod_ssl.so"
Listen 127.0.0.1:${APACHE_TLS_PORT[$v]} https
SSLSessionCache none
<VirtualHost 127.0.0.1:${APACHE_TLS_PORT[$v]}>
    ServerName 127.0.0.1
    SSLEngine on
    SSLCertificateFile "$WORK/tls/cert.pem"
    SSLCertificateKeyFile "$WORK/tls/key.pem"
    SSLSessionTickets off
</VirtualHost>
EOF
        case $v in
        b)
            cat <<EOF

LoadModule remoteip_module "$MODULES_DIR/mod_remoteip.so"
RemoteIPProxyProtocol On
LogLevel warn remoteip:info
EOF
            ;;
        c)
            cat <<EOF

LoadModule proxy_protocol_module "$MODULE_SO"
ProxyProtocol On
ProxyProtocolTrustedProxies 127.0.0.1
LogLevel warn proxy_protocol:info
EOF
            ;;
        a)
            # SAME_INSTANCE=1: (c) is this instance's second port.
            [ "$SAME_INSTANCE" = 0 ] || cat <<EOF

LoadModule proxy_protocol_module "$MODULE_SO"
Listen 127.0.0.1:${APACHE_PORT[c]}
<VirtualHost 127.0.0.1:${APACHE_PORT[c]}>
    ProxyProtocol $([ "$SAME_INSTANCE" = aa ] && echo Off || echo On)
    ProxyProtocolTrustedProxies 127.0.0.1
</VirtualHost>
LogLevel warn proxy_protocol:info
EOF
            ;;
        esac
    } >"$dir/httpd.conf"
}

write_haproxy_conf() {
    local send_proxy=send-proxy wait_data=""
    [ "$PROXY_VERSION" = 1 ] || send_proxy=send-proxy-v2
    # HAPROXY_WAIT_DATA=1: connect to Apache only once the client has sent
    # something (the same for every frontend).
    [ "$HAPROXY_WAIT_DATA" != 1 ] || wait_data='
    tcp-request inspect-delay 5s
    tcp-request content accept if { req.len gt 0 }'
    cat >"$WORK/haproxy.cfg" <<EOF
global
    maxconn 4096
    nbthread 1

defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s

listen plain
    bind 127.0.0.1:${FRONT_PORT[a]}$wait_data
    server apache 127.0.0.1:${APACHE_PORT[a]}

listen remoteip
    bind 127.0.0.1:${FRONT_PORT[b]}$wait_data
    server apache 127.0.0.1:${APACHE_PORT[b]} $send_proxy

listen module
    bind 127.0.0.1:${FRONT_PORT[c]}$wait_data
    server apache 127.0.0.1:${APACHE_PORT[c]} $([ "$SAME_INSTANCE" = aa ] || echo "$send_proxy")
EOF
    [ "$TLS" = 0 ] || cat >>"$WORK/haproxy.cfg" <<EOF

# TLS passed through (TCP mode): Apache terminates it
listen tls-plain
    bind 127.0.0.1:${FRONT_TLS_PORT[a]}$wait_data
    server apache 127.0.0.1:${APACHE_TLS_PORT[a]}

listen tls-remoteip
    bind 127.0.0.1:${FRONT_TLS_PORT[b]}$wait_data
    server apache 127.0.0.1:${APACHE_TLS_PORT[b]} $send_proxy

listen tls-module
    bind 127.0.0.1:${FRONT_TLS_PORT[c]}$wait_data
    server apache 127.0.0.1:${APACHE_TLS_PORT[c]} $send_proxy
EOF
}

# A self-signed ECDSA P-256 certificate for 127.0.0.1 (not a CA
# certificate, which mod_ssl would warn about).
make_certificate() {
    mkdir -p "$WORK/tls"
    "$OPENSSL" req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
        -nodes -days 2 -subj /CN=127.0.0.1 \
        -addext basicConstraints=critical,CA:FALSE \
        -addext subjectAltName=IP:127.0.0.1 \
        -keyout "$WORK/tls/key.pem" -out "$WORK/tls/cert.pem" \
        >"$WORK/tls/openssl.log" 2>&1 \
        || { cat "$WORK/tls/openssl.log" >&2; die "openssl req failed"; }
}

# s_client PORT [ARGS...]: one request over TLS, with openssl s_client.
s_client() {
    local port=$1
    shift
    printf 'GET /index.html HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' \
        | timeout 10 "$OPENSSL" s_client -connect "127.0.0.1:$port" -ign_eof \
            "$@" 2>&1 || true
}

# Checks that a TLS session through haproxy to V is a full handshake and
# cannot be resumed: a second connection offering the first one's session
# (and ticket, read with the response) must be "New".  Prints the
# protocol and cipher.
check_tls() {
    local v=$1 port=${FRONT_TLS_PORT[$1]} sess=$WORK/tls/session.$1 first
    first=$(s_client "$port" -sess_out "$sess")
    grep -q '^HTTP/1.1 200' <<<"$first" \
        || die "${LABEL[$v]}: no 200 over TLS through haproxy"
    grep -q '^New, TLSv1.3' <<<"$(s_client "$port" -sess_in "$sess")" \
        || die "${LABEL[$v]}: TLS session resumed (or not TLS 1.3)"
    sed -n 's/^New, \(.*\)$/\1/p' <<<"$first" | head -1
}

# ---------------------------------------------------------------------------
# 2. HTTP benchmark: starting and checking
# ---------------------------------------------------------------------------

http_code() {   # http_code [-k] URL
    curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$@" || true
}

start_servers() {
    local v code

    mkdir -p "$WORK/htdocs"
    # A small static file: 1 KiB.
    head -c 1024 /dev/zero | tr '\0' 'x' >"$WORK/htdocs/index.html"
    chmod -R a+rX "$WORK/htdocs"
    [ "$TLS" = 0 ] || make_certificate

    for v in $VARIANTS; do
        if [ "$SAME_INSTANCE" != 0 ] && [ "$v" = c ]; then
            # (a)'s instance, its second port: the same processes, log and
            # listener threads
            APACHE_PID[c]=${APACHE_PID[a]}
            ln -s httpd-a "$WORK/httpd-c"
            continue
        fi
        write_apache_conf "$v"
        "$HTTPD" -t -f "$WORK/httpd-$v/httpd.conf" 2>"$WORK/httpd-$v/t.log" \
            || { cat "$WORK/httpd-$v/t.log" >&2; die "bad config for $v"; }
        [ -z "$APACHE_CPU_QUOTA" ] || cgroup_create "$v"
        # PATHTIME: the children append to this file (opened after they
        # have switched user).
        : >"$WORK/pathtime.$v"
        chmod 666 "$WORK/pathtime.$v"
        PP_PATH_TIMING_FILE=$WORK/pathtime.$v \
            "${ON_APACHE_CPUS[@]}" "$HTTPD" -f "$WORK/httpd-$v/httpd.conf" \
            -DFOREGROUND &
        APACHE_PID[$v]=$!
        PIDS="$PIDS $!"
        # The parent at once, so that most likely its children are forked
        # inside; all of them are moved and checked once it answers.
        [ -z "$APACHE_CPU_QUOTA" ] || cgroup_add "$v" "${APACHE_PID[$v]}"
    done
    write_haproxy_conf
    "${ON_CLIENT_CPUS[@]}" "$HAPROXY" -db -f "$WORK/haproxy.cfg" \
        >"$WORK/haproxy.log" 2>&1 &
    HAPROXY_PID=$!
    PIDS="$PIDS $!"

    # Ready when each answers through haproxy.
    for v in $VARIANTS; do
        for _ in $(seq 50); do
            code=$(http_code "http://127.0.0.1:${FRONT_PORT[$v]}/index.html")
            [ "$code" = 200 ] && break
            kill -0 "${APACHE_PID[$v]}" 2>/dev/null \
                || { cat "$WORK/httpd-$v/error.log" >&2; die "$v died"; }
            sleep 0.2
        done
        [ "$code" = 200 ] || die "${LABEL[$v]} does not answer through haproxy"
    done
    if [ -n "$APACHE_CPU_QUOTA" ]; then
        for v in $VARIANTS; do
            cgroup_add_instance "$v"
            echo "APACHE_CPU_QUOTA=$APACHE_CPU_QUOTA: ${LABEL[$v]}:" \
                "$CGROUP_NPROCS processes in ${CGROUP[$v]}" \
                "(cfs_quota_us $(cat "${CGROUP[$v]}/cpu.cfs_quota_us")," \
                "cfs_period_us $(cat "${CGROUP[$v]}/cpu.cfs_period_us"))"
        done
    fi

    # Sanity: (b) and (c) must refuse a connection without a PROXY header
    # (otherwise the header would not be read by the module under test),
    # and (a) must serve it.
    [ "$(http_code "http://127.0.0.1:${APACHE_PORT[a]}/index.html")" = 200 ] \
        || die "(a) does not answer directly"
    for v in ${VARIANTS#a }; do
        [ "$SAME_INSTANCE" != aa ] || break
        code=$(http_code "http://127.0.0.1:${APACHE_PORT[$v]}/index.html")
        [ "$code" != 200 ] \
            || die "${LABEL[$v]} served a request without a PROXY header"
    done
    if [ "$SAME_INSTANCE" = aa ]; then
        echo "servers up: (a) and (c) are two ports of one Apache, neither" \
            "with the PROXY protocol (SAME_INSTANCE=aa: an A/A control)"
    elif [ "$SAME_INSTANCE" = 1 ]; then
        echo "servers up: (a) and (c) are two ports of one Apache" \
            "(SAME_INSTANCE=1); (c) refuses connections without a PROXY header"
    else
        echo "servers up; (b) and (c) refuse connections without a PROXY header"
    fi
    [ "$TLS" = 1 ] || return 0

    # The same over TLS, and no session resumption.
    for v in $VARIANTS; do
        code=$(http_code -k \
            "https://127.0.0.1:${FRONT_TLS_PORT[$v]}/index.html")
        [ "$code" = 200 ] \
            || die "${LABEL[$v]} does not answer over TLS through haproxy"
    done
    [ "$(http_code -k \
        "https://127.0.0.1:${APACHE_TLS_PORT[a]}/index.html")" = 200 ] \
        || die "(a) does not answer directly over TLS"
    for v in b c; do
        code=$(http_code -k \
            "https://127.0.0.1:${APACHE_TLS_PORT[$v]}/index.html")
        [ "$code" != 200 ] || die "${LABEL[$v]} served a TLS request" \
            "without a PROXY header"
    done
    for v in $VARIANTS; do
        TLS_PARAMS=$(check_tls "$v")
    done
    echo "TLS: $TLS_PARAMS, ECDSA P-256 certificate; (b) and (c) refuse" \
        "TLS without a PROXY header; a session offered again is not" \
        "resumed (openssl s_client: New), so each connection is a full" \
        "handshake"
}

# CPU time used so far by one Apache instance (every thread of every
# process), in ns, from /proc/PID/task/TID/schedstat.
cpu_ns_of() {   # cpu_ns_of PID...: every thread of these processes
    local p
    for p in "$@"; do
        cat /proc/"$p"/task/*/schedstat 2>/dev/null || true
    done | awk '{ s += $1 } END { printf "%.0f\n", s }'
}
apache_cpu_ns() {
    local parent=${APACHE_PID[$1]}
    # shellcheck disable=SC2046
    cpu_ns_of "$parent" $(pgrep -P "$parent")
}

# CPU time used so far by haproxy (all its threads), in ns.
haproxy_cpu_ns() {
    cpu_ns_of "$HAPROXY_PID"
}

# "BUSY TOTAL" jiffies so far of the CPU wrk and haproxy run on
# (CLIENT_CPUS when pinned to one CPU, else all CPUs), from /proc/stat.
client_cpu_ticks() {
    local line=cpu
    [ "$PIN" != 1 ] || ! [[ $CLIENT_CPUS =~ ^[0-9]+$ ]] \
        || line=cpu$CLIENT_CPUS
    awk -v l="$line" '$1 == l {
        t = 0; for (i = 2; i <= NF; i++) t += $i
        print t - $5 - $6, t }' /proc/stat
}

# "WARNINGS REFUSED" in an instance's error log so far: lines at level warn
# or worse, and connections refused by the PROXY module (logged at info).
error_log_counts() {
    awk '/\[(proxy_protocol|remoteip):info\]/  { refused++; next }
         /:(emerg|alert|crit|error|warn)\]/     { warnings++ }
         END { print warnings + 0, refused + 0 }' "$WORK/httpd-$1/error.log"
}

# ---------------------------------------------------------------------------
# 2. HTTP benchmark: runs
# ---------------------------------------------------------------------------

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
#   haproxy_us_per_req client_cpu_busy% throttled%
# (haproxy's CPU time per request, and how busy the CPU that wrk and
# haproxy share was: near 100 %, the client side limits req/s; with
# APACHE_CPU_QUOTA, the share of the instance's cgroup periods in which
# the quota ran out, else "-")
measure() {
    local v=$1 workload=$2 round=$3 out cpu0 cpu1 warn0 warn1 ref0 ref1
    local req rps p99 err us pct flag="" refused allowed=0
    local hcpu0 hcpu1 busy0 tot0 busy1 tot1 hus cbusy
    local per0 thr0 per1 thr1 thr=- thr_text=""
    out=$WORK/wrk.$workload.$v.$round
    cpu0=$(apache_cpu_ns "$v")
    hcpu0=$(haproxy_cpu_ns)
    read -r busy0 tot0 < <(client_cpu_ticks)
    read -r warn0 ref0 < <(error_log_counts "$v")
    read -r per0 thr0 < <(cgroup_throttling "$v")
    run_wrk "$v" "$workload" "$DURATION" "$out"
    read -r per1 thr1 < <(cgroup_throttling "$v")
    cpu1=$(apache_cpu_ns "$v")
    hcpu1=$(haproxy_cpu_ns)
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
    printf '%-13s %-24s round %d: %9.0f req/s  p99 %7.2f ms  httpd %6.1f us/req %4s%%  haproxy %5.1f us/req  client CPU %3s%%%s  errors %s%s\n' \
        "$workload" "${LABEL[$v]}" "$round" "$rps" "$p99" "$us" "$pct" \
        "$hus" "$cbusy" "$thr_text" "$err" "$flag"
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
        "HAPROXY_WAIT_DATA=$HAPROXY_WAIT_DATA, ORDER=$ORDER$quota =="
    for w in $WORKLOADS; do
        echo
        case $w in
        close)     echo "workload: close (via haproxy, new connection per request)" ;;
        keepalive) echo "workload: keepalive (via haproxy, $CONNECTIONS persistent connections)" ;;
        direct)    echo "workload: direct (no haproxy, new connection per request, wrk sends the header)" ;;
        tls)       echo "workload: tls (via haproxy, TLS terminated by Apache, new connection and full handshake per request)" ;;
        tls-keepalive) echo "workload: tls-keepalive (via haproxy, TLS terminated by Apache, $CONNECTIONS persistent connections)" ;;
        esac
        echo "  medians of $(rounds_for "$w") rounds:"
        if [ -n "$APACHE_CPU_QUOTA" ]; then
            printf '  %-24s %10s %10s %12s %9s %14s %10s %9s %7s\n' variant \
                "req/s" "p99 ms" "httpd us/req" "httpd CPU" \
                "haproxy us/req" "client CPU" throttled errors
        else
            printf '  %-24s %10s %10s %12s %9s %14s %10s %7s\n' variant \
                "req/s" "p99 ms" "httpd us/req" "httpd CPU" \
                "haproxy us/req" "client CPU" errors
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
        printf '    haproxy us/req (c)/(a) %.3f (%s)   (c)/(b) %.3f (%s)\n' \
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

# ---------------------------------------------------------------------------
# 3. Cost per connection in Apache: syscalls (perf), instructions (callgrind)
# ---------------------------------------------------------------------------

# Replaces the running instance V by one under callgrind (same
# configuration and port, one process), sends COUNT_CONNECTIONS
# requests through haproxy, and prints the instructions per connection.
callgrind_instance() {
    local v=$1 dir=$WORK/httpd-$1 out=$WORK/callgrind.httpd.$1
    local pid ab_out

    kill "${APACHE_PID[$v]}"
    wait "${APACHE_PID[$v]}" 2>/dev/null || true
    forget_pid "${APACHE_PID[$v]}"
    # Callgrind writes its file at exit, after Apache has switched user.
    : >"$out"
    chmod 666 "$out"
    [ "$(id -u)" != 0 ] || chown "$(run_user)" "$out"
    "${ON_APACHE_CPUS[@]}" valgrind -q --tool=callgrind --vgdb=no \
        --toggle-collect=ap_run_pre_connection \
        --toggle-collect=ap_run_process_connection \
        --callgrind-out-file="$out" \
        "$HTTPD" -X -f "$dir/httpd.conf" 2>"$dir/valgrind.log" &
    pid=$!
    PIDS="$PIDS $pid"
    # Ready when one request succeeds: that connection is counted too (a
    # probe that fails never reached Apache: haproxy's connect was refused).
    for _ in $(seq 100); do
        [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 60 \
            "http://127.0.0.1:${FRONT_PORT[$v]}/index.html")" = 200 ] && break
        kill -0 "$pid" 2>/dev/null || die "callgrind run of $v died"
        sleep 0.3
    done
    ab_out=$WORK/ab.$v
    "${ON_CLIENT_CPUS[@]}" ab -n "$COUNT_CONNECTIONS" -c 4 \
        "http://127.0.0.1:${FRONT_PORT[$v]}/index.html" >"$ab_out" 2>&1 \
        || true
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    forget_pid "$pid"
    if ! grep -q "^Complete requests: *$COUNT_CONNECTIONS\$" "$ab_out" \
        || ! grep -q "^Failed requests: *0\$" "$ab_out" \
        || grep -q "^Non-2xx" "$ab_out"; then
        echo "ERRORS in the callgrind run of ${LABEL[$v]}, see $ab_out" >&2
        echo -
        return
    fi
    awk -v n="$((COUNT_CONNECTIONS + 1))" \
        '/^totals:/ { printf "%.0f\n", $2 / n }' "$out"
}

# Syscalls per connection of the running instance V (every thread of every
# process), counted by perf while ab sends COUNT_CONNECTIONS requests
# through haproxy; "-" where perf cannot count them (not installed, or not
# allowed: tracepoints need root or kernel.perf_event_paranoid <= -1).
count_syscalls() {
    local v=$1 out=$WORK/perf.$1 pids perf_pid n
    if ! command -v perf >/dev/null; then
        echo -
        return
    fi
    pids=$(echo "${APACHE_PID[$v]}" $(pgrep -P "${APACHE_PID[$v]}") | tr ' ' ,)
    perf stat -x, -e raw_syscalls:sys_enter -p "$pids" -o "$out" \
        2>/dev/null &
    perf_pid=$!
    sleep 0.5
    "${ON_CLIENT_CPUS[@]}" ab -n "$COUNT_CONNECTIONS" -c 4 \
        "http://127.0.0.1:${FRONT_PORT[$v]}/index.html" >/dev/null 2>&1 \
        || true
    kill -INT "$perf_pid" 2>/dev/null || true
    wait "$perf_pid" 2>/dev/null || true
    n=$(awk -F, '$3 ~ /raw_syscalls/ && $1 ~ /^[0-9]+$/ { print $1 }' \
        "$out" 2>/dev/null)
    if [ -n "$n" ]; then
        awk -v s="$n" -v n="$COUNT_CONNECTIONS" \
            'BEGIN { printf "%.1f\n", s / n }'
    else
        echo -
    fi
}

# difference X Y DECIMALS -> "+D (+P%)", how much more X is than Y
difference() {
    awk -v x="$1" -v y="$2" -v d="$3" 'BEGIN {
        if (x == "-" || y == "-" || y == 0) print "-";
        else printf "%+." d "f (%+.1f%%)\n", x - y, 100 * (x - y) / y }'
}

count_per_connection() {
    local v
    declare -A ir=() sys=()
    echo
    echo "== Apache cost per connection: instructions (callgrind, user space," \
        "inside the"
    echo "   pre_connection and process_connection hooks) and syscalls" \
        "(perf, all"
    echo "   threads); ab: $COUNT_CONNECTIONS requests, one per" \
        "connection, via haproxy, PROXY v$PROXY_VERSION =="
    if ! command -v valgrind >/dev/null || ! command -v ab >/dev/null; then
        echo "(needs valgrind and ab, from apache2-utils: skipped)"
        return
    fi
    for v in $VARIANTS; do
        sys[$v]=$(count_syscalls "$v")
        ir[$v]=$(callgrind_instance "$v")
    done
    printf '  %-24s %18s %20s\n' variant "Ir/connection" "syscalls/connection"
    for v in $VARIANTS; do
        printf '  %-24s %18s %20s\n' "${LABEL[$v]}" "${ir[$v]}" "${sys[$v]}"
    done
    printf '  %-24s %18s %20s\n' "(c) - (a)" \
        "$(difference "${ir[c]}" "${ir[a]}" 0)" \
        "$(difference "${sys[c]}" "${sys[a]}" 1)"
    printf '  %-24s %18s %20s\n' "(c) - (b)" \
        "$(difference "${ir[c]}" "${ir[b]}" 0)" \
        "$(difference "${sys[c]}" "${sys[b]}" 1)"
}


# ---------------------------------------------------------------------------
# 4. Apache's CPU per connection, (a) and (c) interleaved (PERCONN=1)
# ---------------------------------------------------------------------------

# CPU time so far of instance V's children only (not the parent), in ns.
children_cpu_ns() {
    # shellcheck disable=SC2046
    cpu_ns_of $(pgrep -P "${APACHE_PID[$1]}")
}

# "Q1 MEDIAN Q3" of the numbers on stdin (linear interpolation between
# the closest ranks, as R's default and numpy's percentile do).
quartiles() {
    sort -g | awk '{ v[NR] = $1 }
        function q(p,   h, i) {
            h = (NR - 1) * p + 1; i = int(h)
            return i >= NR ? v[NR] : v[i] + (h - i) * (v[i + 1] - v[i])
        }
        END { if (NR == 0) print "nan nan nan"
              else printf "%.4f %.4f %.4f\n", q(0.25), q(0.5), q(0.75) }'
}

# "LOW HIGH": the 2.5 and 97.5 percentiles of the median of 2,000
# bootstrap resamples of the numbers on stdin.
bootstrap_median() {
    awk 'function med(a, n,   i, j, t) {
             for (i = 2; i <= n; i++) {      # insertion sort: n is small
                 t = a[i]
                 for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]
                 a[j + 1] = t
             }
             return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
         }
         { v[++n] = $1 }
         END {
             if (n == 0) { print "nan nan"; exit }
             srand(1)
             for (b = 1; b <= 2000; b++) {
                 for (i = 1; i <= n; i++) s[i] = v[int(rand() * n) + 1]
                 m[b] = med(s, n)
             }
             med(m, 2000)
             print m[50], m[1951]
         }'
}

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

# N requests to V, one per connection, C at a time: ab through haproxy,
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
    if [ "$PERCONN_SENDER" = direct ]; then
        case $DIRECT_SEGMENTS in
        one) echo "pp_conn_client straight to Apache, header and request" \
                "in one write" ;;
        two) echo "pp_conn_client straight to Apache, two segments to" \
                "either port" ;;
        as-haproxy) echo "pp_conn_client straight to Apache, the header" \
                "and the request in two segments, the request alone in one" ;;
        esac
    else
        echo "ab via haproxy"
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

# CPU time so far of V's listener threads, in ns.
listener_cpu_ns() {
    local t
    for t in ${LISTENERS[$1]}; do
        cat "$t/schedstat" 2>/dev/null || true
    done | awk '{ s += $1 } END { printf "%.0f\n", s }'
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

# One run of V; appends "round variant us_per_connection
# listener_us_per_connection listener_wakeups_per_connection" to
# $WORK/perconn.
perconn_run() {   # perconn_run V ROUND
    local v=$1 round=$2 out=$WORK/perconn.ab.$1.$2 c0 c1 w0 w1 r0 r1 l0 l1 \
        s0 s1
    read -r w0 r0 < <(error_log_counts "$v")
    s0=$(listener_sleeps "$v")
    l0=$(listener_cpu_ns "$v")
    c0=$(children_cpu_ns "$v")
    perconn_ab "$v" "$PERCONN_CONNECTIONS" "$PERCONN_CONCURRENCY" "$out" \
        || die "${LABEL[$v]}: errors in round $round, see $out"
    c1=$(settled_cpu_ns "$v")
    l1=$(listener_cpu_ns "$v")
    s1=$(listener_sleeps "$v")
    read -r w1 r1 < <(error_log_counts "$v")
    [ "$w1" = "$w0" ] && [ "$r1" = "$r0" ] \
        || die "${LABEL[$v]}: warnings or refused connections in round" \
            "$round, see $WORK/httpd-$v/error.log"
    awk -v r="$round" -v v="$v" -v c="$((c1 - c0))" -v l="$((l1 - l0))" \
        -v s="$((s1 - s0))" -v n="$PERCONN_CONNECTIONS" \
        'BEGIN { printf "%d %s %.3f %.3f %.3f\n", r, v, c / 1000 / n,
                 l / 1000 / n, s / n }' >>"$WORK/perconn"
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
    local round v s_a s_c
    echo
    echo "== 4. Apache's CPU per connection, (a) and (c) interleaved:" \
        "$PERCONN_ROUNDS rounds of $PERCONN_CONNECTIONS connections each" \
        "($(perconn_sender), $PERCONN_CONCURRENCY at a time, PROXY v$PROXY_VERSION," \
        "HAPROXY_WAIT_DATA=$HAPROXY_WAIT_DATA), CPU of the httpd children" \
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
            | awk -v l="${LABEL[$v]:0:3} listener wake-ups/conn" '{
                printf "  %-24s %10.3f %10.3f %10.3f\n", l, $1, $2, $3 }'
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

# perf on V's listener threads while the sender makes
# PERCONN_PERF_CONNECTIONS connections.  The samples give each symbol's
# share only (task-clock every 100 us of the threads' CPU: at shorter
# periods this VM drops ticks and counts about half the time); the
# listeners' CPU over the same connections (schedstat) scales them.
# Writes "symbol us_per_connection" lines to $WORK/perf.V.syms.
perconn_perf() {   # perconn_perf V
    local v=$1 tids ppid l0 l1 ok=1
    tids=$(for t in ${LISTENERS[$v]}; do basename "$t"; done | paste -sd,)
    perf record -q -e task-clock -c 100000 -t "$tids" \
        -o "$WORK/perf.$v.data" 2>"$WORK/perf.$v.log" &
    ppid=$!
    sleep 1
    kill -0 "$ppid" 2>/dev/null \
        || die "perf record did not start: $(cat "$WORK/perf.$v.log")"
    l0=$(listener_cpu_ns "$v")
    perconn_ab "$v" "$PERCONN_PERF_CONNECTIONS" "$PERCONN_CONCURRENCY" \
        "$WORK/perf.ab.$v" || ok=
    l1=$(listener_cpu_ns "$v")
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

# The listener threads of (a) and (c) by symbol (PERCONN_PERF=1).
listener_profile() {
    local v
    command -v perf >/dev/null || die "PERCONN_PERF=1 needs perf (linux-perf)"
    echo
    echo "== 4b. The listener threads by symbol, perf task-clock," \
        "$PERCONN_PERF_CONNECTIONS connections each ($(perconn_sender)) =="
    find_listeners a
    find_listeners c
    for v in a c; do
        perconn_perf "$v"
    done
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

# The kernel's events in the listener threads (PERCONN_TRACE=1).  Counted
# per thread, so a packet counts where it is processed: a segment that
# arrives while its socket is locked waits in the socket's backlog and is
# processed by the thread that holds the lock, when it lets go.
TRACE_EVENTS=net:netif_receive_skb,net:net_dev_xmit,sched:sched_switch
for call in epoll_wait epoll_ctl accept4 read close futex; do
    TRACE_EVENTS=$TRACE_EVENTS,syscalls:sys_enter_$call
done

# Writes "event per_connection" lines to $WORK/trace.V.per.
perconn_trace() {   # perconn_trace V
    local v=$1 tids ppid ok=1
    tids=$(for t in ${LISTENERS[$v]}; do basename "$t"; done | paste -sd,)
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
    [ -s "$WORK/trace.$v.per" ] \
        || die "perf stat counted nothing, see $WORK/trace.$v and $WORK/trace.$v.log"
}

# The listener threads' kernel events of (a) and (c) (PERCONN_TRACE=1).
listener_trace() {
    local v
    command -v perf >/dev/null || die "PERCONN_TRACE=1 needs perf (linux-perf)"
    echo
    echo "== 4c. The kernel's events in the listener threads, a connection," \
        "$PERCONN_PERF_CONNECTIONS connections each ($(perconn_sender)) =="
    find_listeners a
    find_listeners c
    for v in a c; do
        perconn_trace "$v"
    done
    printf '  %-28s %8s %8s %8s\n' "per connection" "(a)" "(c)" "(c)-(a)"
    LC_ALL=C join -a1 -a2 -e0 -o 0,1.2,2.2 "$WORK/trace.a.per" \
        "$WORK/trace.c.per" \
        | awk '{ printf "  %-28s %8.3f %8.3f %+8.3f\n", $1, $2, $3, $3 - $2 }'
}

# ---------------------------------------------------------------------------
# 5. The connection's path through Apache, timed inside it (PATHTIME=1)
# ---------------------------------------------------------------------------

# Builds the helpers that parts 4 and 5 need.
build_perconn_tools() {
    if [ "$PERCONN_SENDER" = direct ]; then
        "$CC" -O2 -pthread "$TOP/bench/pp_conn_client.c" \
            -o "$WORK/pp_conn_client" || die "cannot build pp_conn_client"
        [ "$PROXY_VERSION" = 1 ] \
            || die "PERCONN_SENDER=direct sends PROXY v1 only"
    fi
    if [ "$PATHTIME" != 0 ]; then
        command -v apxs >/dev/null && command -v apr-1-config >/dev/null \
            || die "PATHTIME=1 needs apxs and apr-1-config (apache2-dev)"
        # shellcheck disable=SC2046
        "$CC" -O2 -shared -fPIC -I"$(apxs -q INCLUDEDIR)" \
            $(apr-1-config --includes --cppflags) \
            "$TOP/bench/mod_pp_path_timing.c" \
            -o "$WORK/mod_pp_path_timing.so" \
            || die "cannot build mod_pp_path_timing.so"
    fi
}

# "N MEDIAN_READ MEDIAN_SERVE" (us) of the lines in V's timing file.
path_medians() {   # path_medians V
    awk '{ print $1 }' "$WORK/pathtime.$1" | median >"$WORK/pathtime.r"
    awk '{ print $2 }' "$WORK/pathtime.$1" | median >"$WORK/pathtime.s"
    awk -v r="$(cat "$WORK/pathtime.r")" -v s="$(cat "$WORK/pathtime.s")" \
        'END { printf "%d %.3f %.3f\n", NR, r / 1000, s / 1000 }' \
        "$WORK/pathtime.$1"
}

path_timing() {
    local round v n r s c0 c1 out
    echo
    echo "== 5. The connection's path through Apache, timed inside it" \
        "(mod_pp_path_timing): $PATHTIME_ROUNDS rounds of" \
        "$PATHTIME_CONNECTIONS connections, one at a time" \
        "($(perconn_sender), PROXY v$PROXY_VERSION) =="
    echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
    : >"$WORK/pathtime"
    for v in a c; do
        perconn_ab "$v" "$PATHTIME_CONNECTIONS" 1 "$WORK/pathtime.warmup.$v" \
            || die "${LABEL[$v]}: errors in part 5's warm-up"
    done
    for round in $(seq "$PATHTIME_ROUNDS"); do
        for v in $([ $((round % 2)) = 1 ] && echo a c || echo c a); do
            out=$WORK/pathtime.ab.$v.$round
            : >"$WORK/pathtime.$v"
            c0=$(children_cpu_ns "$v")
            perconn_ab "$v" "$PATHTIME_CONNECTIONS" 1 "$out" \
                || die "${LABEL[$v]}: errors in part 5, round $round, see $out"
            c1=$(children_cpu_ns "$v")
            read -r n r s < <(path_medians "$v")
            [ "$n" -ge "$PATHTIME_CONNECTIONS" ] \
                || die "${LABEL[$v]}: $n timed connections of" \
                    "$PATHTIME_CONNECTIONS in part 5, round $round"
            awk -v round="$round" -v v="$v" -v r="$r" -v s="$s" \
                -v c="$((c1 - c0))" -v n="$PATHTIME_CONNECTIONS" \
                'BEGIN { printf "%d %s %.3f %.3f %.3f\n", round, v, r, s,
                         c / 1000 / n }' >>"$WORK/pathtime"
        done
    done
    echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "per round: round, variant, median us of read and serve," \
        "children's CPU us/connection:"
    sed -e 's/^/  /' "$WORK/pathtime"
    printf '  %-30s %10s %10s %10s\n' "medians over the rounds" read serve \
        "CPU/conn"
    for v in a c; do
        printf '  %-30s %10.3f %10.3f %10.2f\n' "${LABEL[$v]}" \
            "$(awk -v v="$v" '$2 == v { print $3 }' "$WORK/pathtime" | median)" \
            "$(awk -v v="$v" '$2 == v { print $4 }' "$WORK/pathtime" | median)" \
            "$(awk -v v="$v" '$2 == v { print $5 }' "$WORK/pathtime" | median)"
    done
    # Per round, (c) - (a) of each median; then their median and range.
    awk '{ x[$1, $2, 3] = $3; x[$1, $2, 4] = $4; if ($1 > n) n = $1 }
         END { for (r = 1; r <= n; r++)
                   printf "%.3f %.3f\n", x[r, "c", 3] - x[r, "a", 3],
                          x[r, "c", 4] - x[r, "a", 4] }' "$WORK/pathtime" \
        >"$WORK/pathtime.diff"
    for col in 1 2; do
        awk -v c="$col" '{ print $c }' "$WORK/pathtime.diff" | sort -g \
            >"$WORK/pathtime.col"
        printf '  (c) - (a), %-5s us: median %+.3f, rounds %+.3f to %+.3f\n' \
            "$([ "$col" = 1 ] && echo read || echo serve)" \
            "$(median <"$WORK/pathtime.col")" \
            "$(head -1 "$WORK/pathtime.col")" "$(tail -1 "$WORK/pathtime.col")"
    done
    awk -v d="$(awk '{ print $1 + $2 }' "$WORK/pathtime.diff" | median)" \
        -v a="$(awk '$2 == "a" { print $5 }' "$WORK/pathtime" | median)" \
        'BEGIN { printf "  the path, read + serve, (c) - (a): %+.3f us a" \
                        " connection, %+.2f %% of (a)'"'"'s CPU per" \
                        " connection in these runs\n", d, 100 * d / a }'
}

[ "$MICRO" = 0 ] || micro_benchmark
if [ "$MACRO" != 0 ] || [ "$COUNTS" != 0 ] || [ "$PERCONN" != 0 ] \
    || [ "$PATHTIME" != 0 ]; then
    echo "== HTTP benchmark: wrk -> haproxy (TCP) -> Apache event MPM =="
    echo "$(nproc) CPUs; PIN=$PIN (Apache on CPU $APACHE_CPUS," \
        "wrk+haproxy on CPU $CLIENT_CPUS); $($HTTPD -v | head -1);" \
        "$($HAPROXY -v | head -1 | cut -d' ' -f1-3); PROXY v$PROXY_VERSION;" \
        "HAPROXY_WAIT_DATA=$HAPROXY_WAIT_DATA$([ -z "$APACHE_CPU_QUOTA" ] \
            || echo "; APACHE_CPU_QUOTA=$APACHE_CPU_QUOTA (% of one CPU)")"
    check_tools
    write_wrk_script
    build_perconn_tools
    start_servers
    [ "$MACRO" = 0 ] || macro_benchmark
    [ "$COUNTS" = 0 ] || count_per_connection
    [ "$PERCONN" = 0 ] || per_connection_cpu
    [ "$PERCONN" = 0 ] || [ "$PERCONN_PERF" = 0 ] || listener_profile
    [ "$PERCONN" = 0 ] || [ "$PERCONN_TRACE" = 0 ] || listener_trace
    [ "$PATHTIME" = 0 ] || path_timing
fi
