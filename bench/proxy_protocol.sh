#!/bin/bash
#
# bench/proxy_protocol.sh: what does mod_proxy_protocol cost?
#
# 1. Parser micro-benchmark (bench/pp_parse_bench.c): ns per header for a v1
#    header, a v2 IPv4 header and a v2 header with TLVs, then instructions
#    per header counted by callgrind.
# 2. The same HTTP workload through HAProxy (TCP mode; or nginx's stream
#    module, BALANCER=nginx) to three Apache instances that differ only in
#    how they learn the client address:
#      (a) plain      no PROXY header (haproxy without send-proxy, nginx
#                     without proxy_protocol), Apache without PROXY support
#      (b) remoteip   a PROXY header, mod_remoteip RemoteIPProxyProtocol On
#      (c) module     a PROXY header, mod_proxy_protocol (ProxyProtocol On,
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
#    the balancer's CPU time per request (the same way) and how busy the
#    CPU that wrk and the balancer share was (client CPU, /proc/stat): near
#    100 %, req/s is limited by the client side, not by Apache.
# 3. Cost per connection in Apache, counted rather than timed, so not
#    disturbed by the noise that part 2 suffers from.  ab sends
#    COUNT_CONNECTIONS requests through the balancer, one per connection:
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
#    at a time, through the balancer.  The CPU time is that of the httpd
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
#    PERCONN_SENDER=direct replaces ab and the balancer by
#    bench/pp_conn_client.c
#    (built here): it connects straight to Apache and sends, in one
#    write(), the PROXY v1 header and the request to (c), the request
#    alone to (a), so that both get one segment from a sender doing the
#    same work.  haproxy 2.6 in TCP mode writes the header in a segment
#    of its own as soon as it has connected (also with
#    HAPROXY_WAIT_DATA=1: 2 segments more per connection, counted with
#    nstat), and spends more CPU per connection on it; nginx
#    (BALANCER=nginx, with ssl_preread) writes both in one writev().
#    DIRECT_SEGMENTS=as-haproxy makes the direct sender do the same (the
#    header, then the request, two segments to (c), one to (a));
#    DIRECT_SEGMENTS=two gives either port two segments.  The listener
#    threads' wake-ups a connection are reported with their CPU: with
#    several connections in flight one wake-up can serve several; so
#    are every thread's wake-ups, preemptions and migrations (medians a
#    connection, from /proc/PID/task/TID/sched): a worker that waits for
#    a request that is not there yet wakes once more.
#    Through a balancer, its CPU per connection is reported too, and each
#    variant's connections a second (the sender's pace): the header
#    costs haproxy about 8 to 15 us more on (c), nginx under 1 us, and a
#    sender that slow on one port alone makes Apache's CPU per connection
#    dearer there by 1.5 to 2 % with PIN=1, 0.4 % in one unpinned run (an
#    A/A control with HAPROXY_SPIN); HAPROXY_SPIN gives (a) the same pace.
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
#   BALANCER      haproxy or nginx: the TCP balancer in front of Apache
#                 in parts 2 to 5.  nginx: nginx's stream module (Debian:
#                 nginx and libnginx-mod-stream), one worker, on the
#                 same ports, "proxy_protocol on" for (b) and (c), and
#                 "ssl_preread on" in every server (unless NGINX_PREREAD
#                 is 0), so that nginx connects to Apache once the
#                 client's first bytes are there and writes the PROXY
#                 header and those bytes in one writev()
#                 (haproxy 2.6 writes the header and the request in two
#                 send() calls, see HAPROXY_WAIT_DATA).  PROXY v1 only;
#                 the HAPROXY_* settings do not apply [haproxy]
#   NGINX_PREREAD 0: with BALANCER=nginx, no ssl_preread: nginx connects
#                 to Apache as soon as the client has connected and
#                 writes the header at once, the client's bytes when they
#                 come (a control: the header then comes ahead of the
#                 request, as from haproxy) [1]
#   HAPROXY_WAIT_DATA
#                 1: every haproxy frontend, (a), (b) and (c) alike, waits
#                 for the client's first bytes before it connects to Apache
#                 ("tcp-request inspect-delay 5s" and "tcp-request content
#                 accept if { req.len gt 0 }").  Either way haproxy 2.6
#                 writes the PROXY header in a segment of its own as soon
#                 as it has connected, and the request after it, so
#                 Apache's accept (TCP_DEFER_ACCEPT) can wake on the
#                 header alone and a worker then waits for the request,
#                 which (a), without a header, never does.  (Seen with one
#                 request at a time; under part 4's load, on fewer than 1
#                 connection in 200 with PIN=1, on about 1 in 4 with PIN=0,
#                 also with HAPROXY_WAIT_DATA=1: PERCONN_TRACE=workers
#                 counts the workers' poll() calls, docs/benchmarks.md.)
#                 [0]
#   ACCEPT_FILTER none or data: "AcceptFilter http|https VALUE" in every
#                 Apache instance.  none: httpd accepts a connection as
#                 soon as it is made, with or without data, so (a) too
#                 waits in a worker for a request that is not there yet
#                 (a control for the above) [unset: httpd's default, data
#                 on Linux: TCP_DEFER_ACCEPT]
#   LISTEN_BUCKETS_RATIO
#                 N: "ListenCoresBucketsRatio N" in every Apache instance
#                 (1 on 2 CPUs: each child its own SO_REUSEPORT listening
#                 socket, so a connection wakes one listener thread, not
#                 every child's) [unset: one socket shared by the children]
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
#   BASE_PORT     Apache on BASE_PORT+1..3 (TLS: +21..23), the balancer on
#                 BASE_PORT+11..13 (TLS: +31..33) [18080]
#   PIN           1: Apache on APACHE_CPUS, wrk+balancer on CLIENT_CPUS
#                 [1 if there are 2 CPUs or more]
#   APACHE_CPUS   [1]       CLIENT_CPUS [0]      WRK_THREADS [1]
#   MICRO, MACRO, COUNTS
#                 0 skips part 1, part 2, part 3 [1]
#   PERCONN       1 runs part 4 [0] (with COUNTS=0, as PATHTIME=1: part 3
#                 leaves the Apache instances stopped)
#   PERCONN_ROUNDS [41]  PERCONN_CONNECTIONS [1000]
#   PERCONN_CONCURRENCY [4]  PERCONN_STRACE_CONNECTIONS [500]
#   PERCONN_SENDER  balancer: ab through the balancer (BALANCER);
#                 direct: pp_conn_client straight to Apache (see part 4),
#                 for parts 4 and 5 (haproxy: the same as balancer, its
#                 name before BALANCER) [balancer]
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
#   DIRECT_GAP_US  with PERCONN_SENDER=direct, a busy wait of N us in
#                 the sender before the request: between the header and
#                 the request when they are two segments (as haproxy
#                 writes the request some time after the header), before
#                 the one write otherwise, so that the sender's pace is
#                 the same for (a) and (c) [0]
#   HAPROXY_SPIN  V:N[,V:N], e.g. a:12,c:0: haproxy runs a Lua action
#                 on each plain HTTP connection to V (a or c) that spends
#                 N us (0 to 999) of its CPU before it connects to Apache
#                 (in parts 2, 4 and 5; not on the TLS ports), Apache
#                 receiving the same bytes: it sets the sender's pace
#                 without changing Apache's work.  The action itself
#                 costs haproxy about 13 to 25 us, so give it to both
#                 variants when comparing paces.  With
#                 SAME_INSTANCE=aa and a:0,c:12 it asks whether a slower
#                 sender alone makes Apache's CPU per connection dearer;
#                 with SAME_INSTANCE=1 and a:12,c:0 (12 us: what (c)'s
#                 header costs haproxy, which part 4 reports) it compares
#                 (a) and (c) at the same pace; a:0,c:0 is the control
#                 [unset]
#   PATHTIME      1 runs part 5 [0]
#   PATHTIME_ROUNDS [10]  PATHTIME_CONNECTIONS [2000]
#   PERCONN_PERF  1 or listeners: with PERCONN=1, after part 4: perf
#                 records the listener threads of (a) and (c) (task-clock,
#                 kernel and user) during PERCONN_PERF_CONNECTIONS [20000]
#                 connections each, and prints their CPU a connection by
#                 symbol, side by side; workers: the children's other
#                 threads instead [0]
#   PERCONN_TRACE 1 or listeners: with PERCONN=1, after part 4: perf stat
#                 counts, over PERCONN_PERF_CONNECTIONS connections each,
#                 what the kernel does in the listener threads of (a) and
#                 (c): packets received and sent in their context, their
#                 context switches and system calls; workers: in the
#                 children's other threads instead [0]
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
#   HAPROXY [haproxy]  NGINX [nginx]  WRK [wrk]  CC [cc]  OPENSSL [openssl]
#   NGINX_STREAM_MODULE [/usr/lib/nginx/modules/ngx_stream_module.so]
#   CERTSUITE_KEEP=1 keeps the temporary dir
#
# shellcheck source-path=SCRIPTDIR
set -eu

DURATION=${DURATION:-3}
ROUNDS=${ROUNDS:-}
CONNECTIONS=${CONNECTIONS:-32}
WARMUP=${WARMUP:-2}
WORKLOADS=${WORKLOADS:-close keepalive tls}
PROXY_VERSION=${PROXY_VERSION:-1}
HAPROXY_WAIT_DATA=${HAPROXY_WAIT_DATA:-0}
HAPROXY_SPIN=${HAPROXY_SPIN:-}
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
BALANCER=${BALANCER:-haproxy}
PERCONN_SENDER=${PERCONN_SENDER:-balancer}
DIRECT_SEGMENTS=${DIRECT_SEGMENTS:-one}
DIRECT_HOLD_US=${DIRECT_HOLD_US:-0}
DIRECT_GAP_US=${DIRECT_GAP_US:-0}
PATHTIME=${PATHTIME:-0}
PATHTIME_ROUNDS=${PATHTIME_ROUNDS:-10}
PATHTIME_CONNECTIONS=${PATHTIME_CONNECTIONS:-2000}
HTTPD=${HTTPD:-/usr/sbin/apache2}
MODULES_DIR=${MODULES_DIR:-/usr/lib/apache2/modules}
HAPROXY=${HAPROXY:-haproxy}
NGINX=${NGINX:-nginx}
NGINX_PREREAD=${NGINX_PREREAD:-1}
NGINX_STREAM_MODULE=${NGINX_STREAM_MODULE:-/usr/lib/nginx/modules/ngx_stream_module.so}
WRK=${WRK:-wrk}
CC=${CC:-cc}
OPENSSL=${OPENSSL:-openssl}
APACHE_CPU_QUOTA=${APACHE_CPU_QUOTA:-}
LISTEN_BUCKETS_RATIO=${LISTEN_BUCKETS_RATIO:-}
ACCEPT_FILTER=${ACCEPT_FILTER:-}
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
[[ $HAPROXY_SPIN =~ ^(([ac]):(0|[1-9][0-9]{0,2}))?(,([ac]):(0|[1-9][0-9]{0,2}))?$ ]] \
    && [ "${HAPROXY_SPIN:0:1}" != , ] \
    && [ "${BASH_REMATCH[2]}" != "${BASH_REMATCH[5]:-none}" ] || {
    echo "proxy_protocol.sh: HAPROXY_SPIN must be V:N or V:N,V:N, V a or c" \
        "(each at most once), N from 0 to 999 microseconds, not" \
        "'$HAPROXY_SPIN'" >&2
    exit 1; }
for setting in PERCONN_PERF PERCONN_TRACE; do
    case ${!setting} in
    0|1|listeners|workers) ;;
    *) echo "proxy_protocol.sh: $setting must be 0, 1, listeners or" \
            "workers, not '${!setting}'" >&2
       exit 1 ;;
    esac
done
case $BALANCER in
haproxy) ;;
nginx)
    # nginx's stream module writes PROXY v1 only, and the HAPROXY_*
    # settings would not apply.
    if [ "$PROXY_VERSION" != 1 ] || [ "$HAPROXY_WAIT_DATA" != 0 ] \
        || [ -n "$HAPROXY_SPIN" ]; then
        echo "proxy_protocol.sh: BALANCER=nginx needs PROXY_VERSION=1" \
            "and neither HAPROXY_WAIT_DATA nor HAPROXY_SPIN" >&2
        exit 1
    fi ;;
*) echo "proxy_protocol.sh: BALANCER must be haproxy or nginx, not" \
       "'$BALANCER'" >&2
   exit 1 ;;
esac
case $NGINX_PREREAD in
1) ;;
0) [ "$BALANCER" = nginx ] || {
       echo "proxy_protocol.sh: NGINX_PREREAD=0 needs BALANCER=nginx" >&2
       exit 1; } ;;
*) echo "proxy_protocol.sh: NGINX_PREREAD must be 0 or 1, not" \
       "'$NGINX_PREREAD'" >&2
   exit 1 ;;
esac
case $PERCONN_SENDER in
balancer|direct) ;;
haproxy) PERCONN_SENDER=balancer ;;     # its name before BALANCER
*) echo "proxy_protocol.sh: PERCONN_SENDER must be balancer or direct," \
       "not '$PERCONN_SENDER'" >&2
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
# direct_us NAME DIGITS: the setting NAME is a number of microseconds of
# at most DIGITS digits (leading zeros dropped), and unless 0 needs the
# direct sender.
direct_us() {
    local v=${!1}
    if ! [[ $v =~ ^[0-9]+$ ]] || [ "${#v}" -gt "$2" ]; then
        echo "proxy_protocol.sh: $1 must be a number of microseconds," \
            "at most $2 digits" >&2
        exit 1
    fi
    v=$((10#$v))
    [ "$v" = 0 ] || [ "$PERCONN_SENDER" = direct ] || {
        echo "proxy_protocol.sh: $1 needs PERCONN_SENDER=direct" >&2
        exit 1; }
    printf -v "$1" %s "$v"
}
direct_us DIRECT_HOLD_US 9
direct_us DIRECT_GAP_US 6
# Part 3 ends with the Apache instances stopped (its callgrind runs
# replace them one by one): parts 4 and 5 need them running.
if [ "$COUNTS" != 0 ] && { [ "$PERCONN" != 0 ] || [ "$PATHTIME" != 0 ]; }; then
    echo "proxy_protocol.sh: part 3 (COUNTS) leaves Apache stopped: run" \
        "PERCONN=1 or PATHTIME=1 with COUNTS=0" >&2
    exit 1
fi
case $ACCEPT_FILTER in
''|none|data) ;;
*) echo "proxy_protocol.sh: ACCEPT_FILTER must be none or data, not" \
       "'$ACCEPT_FILTER'" >&2
   exit 1 ;;
esac
case $LISTEN_BUCKETS_RATIO in
''|[1-9]|[1-9][0-9]) ;;
*) echo "proxy_protocol.sh: LISTEN_BUCKETS_RATIO must be 1 to 99, not" \
       "'$LISTEN_BUCKETS_RATIO'" >&2
   exit 1 ;;
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
BALANCER_PID=""
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

# The parts, and what they share, are in bench/lib/ (each file's head says
# what it holds and which globals it expects from this script):
#   stats.sh              median, quartiles, bootstrap_median (generic)
#   pp_servers.sh         cgroups, Apache and balancer configurations, TLS,
#                         start_servers, CPU readers, build_perconn_tools
#   pp_part1_micro.sh     part 1, the parser micro-benchmark
#   pp_part2_http.sh      part 2, wrk runs and their summary
#   pp_part3_counts.sh    part 3, syscalls (perf) and instructions (callgrind)
#   pp_part4_perconn.sh   part 4 (PERCONN), 4b (PERCONN_PERF), 4c
#                         (PERCONN_TRACE), and the senders part 5 uses too
#   pp_part5_pathtime.sh  part 5 (PATHTIME)
# They define functions and a few globals only; nothing runs until the end
# of this script.
# shellcheck source=lib/stats.sh
. "$TOP/bench/lib/stats.sh"
# shellcheck source=lib/pp_servers.sh
. "$TOP/bench/lib/pp_servers.sh"
# shellcheck source=lib/pp_part1_micro.sh
. "$TOP/bench/lib/pp_part1_micro.sh"
# shellcheck source=lib/pp_part2_http.sh
. "$TOP/bench/lib/pp_part2_http.sh"
# shellcheck source=lib/pp_part3_counts.sh
. "$TOP/bench/lib/pp_part3_counts.sh"
# shellcheck source=lib/pp_part4_perconn.sh
. "$TOP/bench/lib/pp_part4_perconn.sh"
# shellcheck source=lib/pp_part5_pathtime.sh
. "$TOP/bench/lib/pp_part5_pathtime.sh"

# The balancer in headings: its version, and how it is set up.
balancer_version() {
    if [ "$BALANCER" = nginx ]; then
        "$NGINX" -v 2>&1 | sed 's/^nginx version: //'
    else
        $HAPROXY -v | head -1 | cut -d' ' -f1-3
    fi
}
balancer_settings() {
    if [ "$BALANCER" = nginx ]; then
        echo "nginx stream, ssl_preread $([ "$NGINX_PREREAD" = 1 ] && echo on || echo off)"
    else
        echo "HAPROXY_WAIT_DATA=$HAPROXY_WAIT_DATA${HAPROXY_SPIN:+, HAPROXY_SPIN=$HAPROXY_SPIN}"
    fi
}

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

[ "$MICRO" = 0 ] || micro_benchmark
if [ "$MACRO" != 0 ] || [ "$COUNTS" != 0 ] || [ "$PERCONN" != 0 ] \
    || [ "$PATHTIME" != 0 ]; then
    echo "== HTTP benchmark: wrk -> $BALANCER (TCP) -> Apache event MPM =="
    echo "$(nproc) CPUs; PIN=$PIN ($([ "$PIN" = 1 ] \
        && echo "Apache on CPU $APACHE_CPUS, wrk+$BALANCER on CPU $CLIENT_CPUS" \
        || echo "not pinned")); $($HTTPD -v | head -1);" \
        "$(balancer_version); PROXY v$PROXY_VERSION;" \
        "$(balancer_settings)${ACCEPT_FILTER:+; AcceptFilter $ACCEPT_FILTER}$([ -z "$APACHE_CPU_QUOTA" ] \
            || echo "; APACHE_CPU_QUOTA=$APACHE_CPU_QUOTA (% of one CPU)")"
    check_tools
    write_wrk_script
    build_perconn_tools
    start_servers
    [ "$MACRO" = 0 ] || macro_benchmark
    [ "$COUNTS" = 0 ] || count_per_connection
    [ "$PERCONN" = 0 ] || per_connection_cpu
    [ "$PERCONN" = 0 ] || [ "$PERCONN_PERF" = 0 ] || threads_profile
    [ "$PERCONN" = 0 ] || [ "$PERCONN_TRACE" = 0 ] || threads_trace
    [ "$PATHTIME" = 0 ] || path_timing
fi
