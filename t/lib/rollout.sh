# shellcheck shell=bash
#
# t/lib/rollout.sh: helpers for the staggered-restart tests
# (t/rollout/e2e.sh, t/dynamic/e2e.sh) and benchmarks (bench/rollout.sh,
# bench/scale.sh), on top of t/lib/pool.sh (which this file sources, and
# with it t/lib/certsuite.sh).
#
#   rt_start_pool DIR BASE    pool_init, PKI, CertService, backend, the
#                             three proxies, HAProxy; then rt_patch_conf
#   rt_patch_conf N           adds two IncludeOptional lines to proxy N's
#                             generated httpd.conf (the running
#                             configuration does not change): rollout-pre
#                             .conf before MacroGenerate, rollout-post.conf
#                             at the end; the tests write into them
#   rt_post_conf N [LINE...]  (re)writes rollout-post.conf: the test's
#                             CertSyncRestartTimeout, proxy-nokeepalive
#                             (see there), then LINEs
#   rt_proxy_pid N            the httpd parent of proxy N
#   rt_daemon_pid N           its current sync daemon
#   rt_state_file N           STORE/state.json of proxy N
#   rt_issue FILE NAME...     PUT each NAME on CertService; appends
#                             "NAME SERIAL" lines to FILE
#   rt_served N FILE          "NAME SERIAL" for each name of FILE (first
#                             column): the serial proxy N presents in a
#                             TLS handshake with NAME as SNI ("-": the
#                             fallback certificate), one curl process
#   rt_wait_served FILE SECONDS N...  until every proxy N serves every
#                             "NAME SERIAL" of FILE; 0 or 1
#   rt_check_served FILE N... every proxy N presents CertService's serial
#                             (pool_cs_serial) of every name of FILE
#                             (rt_served; pool_served_serial on RT_SPOT
#                             of them); prints mismatches, 1 if any
#   rt_load_start DIR DOMAINFILE  client load through HAProxy (see below)
#   rt_load_stop              stop it and wait
#   rt_load_counts [SINCE [UNTIL]]  "requests failed new-connection
#                             kept-alive" of the batches started in
#                             [SINCE, UNTIL) (epoch seconds)
#   rt_load_failures [SINCE [UNTIL]]  the failed requests
#   rt_load_backend_twice     the load's requests that reached the backend
#                             more than once since rt_load_start
#   rt_load_backend_seen      how many of the load's requests it logged
#   rt_sampler_start FILE     sample HAProxy's `show stat` and each
#                             proxy's /certsync-status every RT_SAMPLE_MS
#   rt_sampler_stop
#   rt_max_out FILE [FROM [TO [SKIP]]]  the most proxies out of rotation
#                             in one sample (between FROM and TO, without
#                             proxy SKIP), "max samples"
#   rt_overlaps, rt_out_samples, rt_out_periods  more of the samples
#   rt_lease_of HOST          live leases of HOST in CertService's
#                             database ("id expires"), via sqlite3
#   rt_log_time LINE          the epoch seconds of an error_log line
#   rt_log_lines N TAG [SINCE]  proxy N's error_log lines with TAG
#
# Load (rt_load_start): RT_LOAD_NEW workers each run curl with
# RT_LOAD_BATCH URLs of different domains (every request on a new
# connection, "Connection: close"), and RT_LOAD_KA workers each run curl
# with RT_LOAD_KA_REQS URLs of one domain on one kept-alive connection, at
# RT_LOAD_KA_RATE; all through HAProxy with SNI and the demo CA verified
# (a name served with the fallback certificate is a failure).  A request
# fails if it does not end with a 200 (curl error, reset, timeout:
# status 000).  Bounded: RT_LOAD_MAX requests per worker, RT_LOAD_SECONDS.
# HTTP/2 (RT_LOAD_HTTP=--http2, or --http1.1).  A request that a graceful
# restart's GOAWAY refused (RFC 9113 6.8: sent on a stream above the
# GOAWAY's last_stream, so not processed) is sent again once on a new
# connection, as the RFC allows and as browsers and curl >= 8.4 do (curl
# 7.88 does not, docs/tls.md), also when an error GOAWAY follows the
# graceful one (mod_http2 sends -902 when a stopping session gets a new
# stream): rt_load_refused counts those; the retry counts as a request, and
# fails like any other.  That the refused request was indeed not processed
# is checked where it would show: every load URL is unique, and the
# backend logs each request it serves, so one sent again after a GOAWAY
# that had been processed after all would be there twice (check-rollout
# checks it with rt_load_backend_twice; t/rollout/h2_graceful.sh prints
# it).

# shellcheck source=pool.sh
. "$(dirname "${BASH_SOURCE[0]}")/pool.sh"

RT_LOAD_NEW=${RT_LOAD_NEW:-2}
RT_LOAD_KA=${RT_LOAD_KA:-2}
RT_LOAD_BATCH=${RT_LOAD_BATCH:-8}
RT_LOAD_KA_REQS=${RT_LOAD_KA_REQS:-20}
RT_LOAD_KA_RATE=${RT_LOAD_KA_RATE:-5/s}
RT_LOAD_PAUSE=${RT_LOAD_PAUSE:-0.2}
RT_LOAD_MAX=${RT_LOAD_MAX:-100000}
RT_LOAD_SECONDS=${RT_LOAD_SECONDS:-600}
RT_SAMPLE_MS=${RT_SAMPLE_MS:-200}
RT_LOAD_PIDS=()
# --http2 (what the proxies offer first) or --http1.1
RT_LOAD_HTTP=${RT_LOAD_HTTP:---http2}

rt_now() { date +%s.%N | cut -c1-14; }

rt_patch_conf() { # N
    local d=$POOL_DIR/proxy$1
    [ -f "$d/rollout-pre.conf" ] || : >"$d/rollout-pre.conf"
    [ -f "$d/rollout-post.conf" ] || rt_post_conf "$1"
    chmod 644 "$d/rollout-pre.conf" "$d/rollout-post.conf"
    grep -q 'rollout-pre.conf' "$d/httpd.conf" && return 0
    awk -v pre="$d/rollout-pre.conf" -v post="$d/rollout-post.conf" '
        /^MacroGenerate / { print "IncludeOptional \"" pre "\"" }
        { print }
        END { print "IncludeOptional \"" post "\"" }' \
        "$d/httpd.conf" >"$d/httpd.conf.new" \
        && mv "$d/httpd.conf.new" "$d/httpd.conf"
}

rt_start_pool() { # DIR BASE
    local n
    pool_init "$1" "$2" || return 1
    pool_pki || return 1
    pool_start_certservice || return 1
    pool_start_backend || return 1
    for n in 1 2 3; do
        pool_start_proxy "$n" || return 1
        rt_patch_conf "$n" || return 1
    done
    pool_start_haproxy || return 1
}

rt_proxy_pid() { cat "$POOL_DIR/proxy$1/run/httpd.pid" 2>/dev/null; }

rt_daemon_pid() {
    sed -n 's/.*CY00003: sync daemon started (pid \([0-9]*\)).*/\1/p' \
        "$POOL_DIR/proxy$1/logs/error_log" 2>/dev/null | tail -n 1
}

rt_state_file() { echo "$POOL_DIR/proxy$1/store/state.json"; }

# rt_json_state N: "state health" of proxy N, from its state.json (cheap)
rt_json_state() {
    awk -F'"' '/^ "state":/ { s = $4 } /^ "health":/ { h = $4 }
               END { print (s == "" ? "-" : s), (h == "" ? "-" : h) }' \
        "$(rt_state_file "$1")" 2>/dev/null
}

rt_issue() { # FILE NAME...: PUT, append "NAME SERIAL"
    local f=$1 name s rc=0
    shift
    for name in "$@"; do
        if s=$(pool_add_domain "$name") && [ -n "$s" ]; then
            echo "$name $s" >>"$f"
        else
            echo "rt_issue: $name failed" >&2
            rc=1
        fi
    done
    return $rc
}

# rt_served N FILE: "NAME SERIAL" as proxy N presents NAME now: the
# leaf's serial in a TLS handshake with NAME as SNI, "-" for the proxies'
# fallback certificate or no handshake.  Straight to the proxy's TLS port
# from 127.0.0.1 (no PROXY header), one curl process for all the names
# (%{certs}): the same check as pool_served_serial, cheap enough to poll
# and to run over every name (openssl s_client costs ~0.1 s of CPU each).
rt_served() {
    local n=$1 f=$2 port name args=() fb
    port=$(pool_proxy_port "$n" tls)
    fb=$(openssl x509 -in "$POOL_PKI/fallback.crt" -noout -serial 2>/dev/null \
         | sed 's/^serial=//' | _pool_serial_norm)
    while read -r name _; do
        [ -n "$name" ] || continue
        args+=(--resolve "$name:$port:127.0.0.1"
               --url "https://$name:$port/rt-check" -o /dev/null)
    done <"$f"
    [ ${#args[@]} -gt 0 ] || return 0
    curl -s -k --noproxy '*' --max-time 5 --connect-timeout 5 \
        -H 'Connection: close' \
        -w '\nRT@@ %{url_effective}\n%{certs}\nRT@@END\n' "${args[@]}" 2>/dev/null \
    | awk -v fb="$fb" '
        /^RT@@ / { h = $2; sub(/^https:\/\//, "", h); sub(/:.*/, "", h); s = "" }
        /^Serial Number:/ && s == "" {
            s = tolower($0); sub(/^serial number: */, "", s)
            gsub(/[^0-9a-f]/, "", s); sub(/^0+/, "", s)
        }
        /^RT@@END/ { print h, ((s == "" || s == fb) ? "-" : s) }'
}

# rt_wait_served FILE SECONDS N...: every proxy N serves every
# "NAME SERIAL" of FILE
rt_wait_served() {
    local f=$1 secs=$2 n end bad got
    shift 2
    end=$((SECONDS + secs))
    while :; do
        bad=0
        for n in "$@"; do
            got=$(rt_served "$n" "$f")
            # A name missing from the answer counts as not served.
            if [ -n "$(awk 'NR == FNR { g[$1] = $2; next }
                            g[$1] != $2 { print; exit }' \
                           <(echo "$got") "$f")" ]; then
                bad=1
                break
            fi
        done
        [ $bad = 0 ] && return 0
        [ $SECONDS -ge $end ] && return 1
        sleep 1
    done
}

# rt_check_served FILE N...: the final check.  CertService is asked
# again for each name of FILE (pool_cs_serial: GET /v1/domains/NAME with
# the admin certificate; FILE's serials are not trusted); every proxy N
# must present that serial for every name (rt_served), and
# pool_served_serial (openssl s_client) must agree on RT_SPOT names per
# proxy.  Prints the mismatches, returns 1 if any.
rt_check_served() {
    local f=$1 name want got n tmpf rc=0 i
    shift
    tmpf=$(mktemp "${TMPDIR:-/tmp}/rt-check.XXXXXX") || return 1
    while read -r name _; do
        [ -n "$name" ] || continue
        want=$(pool_cs_serial "$name") || want="(none)"
        echo "$name $want"
    done <"$f" >"$tmpf"
    for n in "$@"; do
        rt_served "$n" "$tmpf" >"$tmpf.$n"
        if ! awk -v p="$n" 'NR == FNR { g[$1] = $2; next }
                 g[$1] != $2 { print "proxy" p " presents " $1 " with " \
                                 (g[$1] == "" ? "nothing" : g[$1]) \
                                 ", CertService has " $2; bad = 1 }
                 END { exit bad }' "$tmpf.$n" "$tmpf"; then
            rc=1
        fi
        i=0
        while read -r name want; do
            [ $i -lt "${RT_SPOT:-3}" ] || break
            i=$((i + 1))
            got=$(pool_served_serial "$n" "$name") || got="(no handshake)"
            if [ "$got" != "$want" ]; then
                echo "pool_served_serial: proxy$n serves $name with $got, CertService has $want"
                rc=1
            fi
        done < <(shuf "$tmpf" 2>/dev/null || cat "$tmpf")
        rm -f "$tmpf.$n"
    done
    rm -f "$tmpf"
    return $rc
}

# rt_post_conf N [LINES...]: proxy N's rollout-post.conf: the test's
# CertSyncRestartTimeout, proxy-nokeepalive, then LINES.
# proxy-nokeepalive: each proxy closes its backend connection after the
# response.  With pool.sh's pooled connections (ProxyPass ttl=2, backend
# KeepAliveTimeout 15, backend MaxRequestWorkers 16) the idle connections
# of three proxies fill the backend's connection slots: requests then wait
# 5 to 10 s for one to free (AH00484 in the backend's log), and the tests
# crawl.  With KeepAliveTimeout 5 and no ttl (pool.sh before), some
# requests got a 502 instead (AH01102: a pooled connection the backend was
# closing).  Neither is what these tests are about.  RT_BACKEND_REUSE=1
# keeps pool.sh's pooled connections.
rt_post_conf() {
    local n=$1
    shift
    {
        echo "# written by t/rollout (t/lib/rollout.sh)"
        echo "CertSyncRestartTimeout ${RT_RESTART_TIMEOUT:-12}"
        if [ -z "${RT_BACKEND_REUSE:-}" ]; then
            if ! grep -q '^ *mod_env\.c$' <<<"$POOL_COMPILED"; then
                echo "LoadModule env_module \"$POOL_MODDIR/mod_env.so\""
            fi
            echo "SetEnv proxy-nokeepalive 1"
        fi
        if [ $# -gt 0 ]; then printf '%s\n' "$@"; fi
    } >"$POOL_DIR/proxy$n/rollout-post.conf"
}

# --- load ----------------------------------------------------------------------

_rt_load_worker() { # kind id domainfile outfile
    local kind=$1 id=$2 df=$3 out=$4 doms n i=0 k reqs=0 d args end
    local port=$POOL_LB_PORT
    mapfile -t doms < <(awk '{ print $1 }' "$df")
    n=${#doms[@]}
    end=$((SECONDS + RT_LOAD_SECONDS))
    while [ ! -e "$RT_LOAD_DIR/stop" ] && [ $reqs -lt "$RT_LOAD_MAX" ] \
          && [ $SECONDS -lt $end ]; do
        args=()
        if [ "$kind" = new ]; then
            for ((k = 0; k < RT_LOAD_BATCH; k++)); do
                d=${doms[$(((id * 7 + i * RT_LOAD_BATCH + k) % n))]}
                args+=(--resolve "$d:$port:127.0.0.1"
                       --url "https://$d:$port/new?w=$id&i=$i&k=$k")
            done
            args+=(-H 'Connection: close')
            reqs=$((reqs + RT_LOAD_BATCH))
        else
            d=${doms[$(((id * 5 + i) % n))]}
            args+=(--resolve "$d:$port:127.0.0.1" --rate "$RT_LOAD_KA_RATE")
            for ((k = 0; k < RT_LOAD_KA_REQS; k++)); do
                args+=(--url "https://$d:$port/ka?w=$id&i=$i&k=$k")
            done
            reqs=$((reqs + RT_LOAD_KA_REQS))
        fi
        # One line per request: status, connections opened, URL, error.
        echo "T $(date +%s)" >>"$out"
        # HTTP/2 by default (the proxies offer h2 first, docs/tls.md).
        # curl 7.88 (Debian 12) does not retry a request that a graceful
        # restart's GOAWAY refused (its stream id above the GOAWAY's
        # last_stream: the server says it did not process it, and RFC 9113
        # 6.8 lets the client send it again): it fails with "Error in the
        # HTTP2 framing layer" (curl 8.4.0 retries, browsers do).  So -v
        # says which stream and GOAWAY each request had, and such a request
        # is sent once more on a new connection, as RFC 9113 allows: a "G"
        # line records the refusal, the retry's "R" line counts.  Every
        # other failure stays a failure (t/rollout/h2_graceful.sh).
        curl -s -v "$RT_LOAD_HTTP" --noproxy '*' --cacert "$POOL_PKI/ca.crt" \
            --max-time 30 --connect-timeout 10 -o /dev/null \
            -w '%{stderr}R %{http_code} %{num_connects} %{url_effective} %{errormsg}\n' \
            "${args[@]}" >/dev/null 2>"$out.v"
        _rt_load_refused "$out.v" "$out" "$port" "$kind"
        i=$((i + 1))
        sleep "$RT_LOAD_PAUSE"
    done
}

# _rt_load_refused VLOG OUT PORT KIND: the R lines of a batch's curl -v
# log to OUT; a failed request whose stream id is above the last_stream
# of a GOAWAY its connection got first becomes a G line, and is sent
# again, once, on a new connection (its R line then counts).
_rt_load_refused() {
    local v=$1 out=$2 port=$3 kind=$4 url host extra=()
    # refused-by-GOAWAY, in the awk below: a request with no answer at
    # all (000), sent on a stream above the last_stream of the last
    # GOAWAY received while it ran, when that GOAWAY said NO_ERROR (a
    # graceful stop), or came after one that did (mod_http2's -902 when
    # a stopping session, its shutdown notice sent, is sent a new
    # stream: docs/tls.md; the G line shows the code).  Such a stream
    # was not processed (RFC 9113 6.8).  An error GOAWAY without a
    # graceful one first, an answer such as 421 or 5xx, or a stream at
    # or below last_stream stays a failure.
    local prog='
        /Using Stream ID: / { for (i = 1; i <= NF; i++) if ($i == "ID:") sid = $(i + 1) + 0 }
        /GOAWAY, error=/ { g = $0; sub(/.*GOAWAY, /, "", g)
                           split(g, a, /[=,]/); gerr = a[2] + 0
                           glast = a[4] + 0; have = 1
                           if (gerr == 0) notice = 1 }
        /^R / { refused = $2 == "000" && have && sid > glast \
                          && (gerr == 0 || notice)
                if (mode == "urls") { if (refused) print $4 }
                else if (refused) print "G", substr($0, 3), "(stream " sid ", GOAWAY error " gerr " last_stream " glast ")"
                else print
                have = 0; notice = 0; sid = 0 }'
    awk -v mode=lines "$prog" "$v" >>"$out"
    [ "$kind" = new ] && extra=(-H 'Connection: close')
    while read -r url; do
        host=${url#https://}
        host=${host%%[:/]*}
        curl -s "$RT_LOAD_HTTP" --noproxy '*' --cacert "$POOL_PKI/ca.crt" \
            --max-time 30 --connect-timeout 10 -o /dev/null \
            --resolve "$host:$port:127.0.0.1" "${extra[@]}" \
            -w 'R %{http_code} %{num_connects} %{url_effective} %{errormsg}\n' \
            "$url" >>"$out" 2>/dev/null
    done < <(awk -v mode=urls "$prog" "$v")
    # A failure that was not a refusal, or a refusal by a GOAWAY with an
    # error code, keeps the batch's curl -v log (the streams and GOAWAYs
    # its connections got) beside OUT, to explain it.
    if awk -v mode=lines "$prog" "$v" \
        | awk '($1 == "R" && $2 != "200") || ($1 == "G" && !/GOAWAY error 0 /) {
                   f = 1 } END { exit !f }'; then
        mv "$v" "$out.failed.$(date +%s.%N).v"
    else
        rm -f "$v"
    fi
}

# rt_load_refused [SINCE [UNTIL]]: "N E": the requests a GOAWAY refused and
# that were sent again (G lines), in batches started in [SINCE, UNTIL), and
# how many of them a GOAWAY with an error code other than NO_ERROR refused
# (after a graceful one: _rt_load_refused)
rt_load_refused() {
    cat "$RT_LOAD_DIR"/*.log 2>/dev/null | awk -v since="${1:-0}" \
        -v until="${2:-9999999999}" '
        $1 == "T" { t = $2; next }
        $1 == "G" && t >= since && t < until {
            g++; if ($0 !~ /GOAWAY error 0 /) e++ }
        END { print g + 0, e + 0 }'
}

# rt_load_refused_text [SINCE [UNTIL]]: rt_load_refused for a diagnostic
rt_load_refused_text() {
    local n e
    read -r n e < <(rt_load_refused "$@")
    echo "$n refused by a GOAWAY and sent again (RFC 9113 6.8; $e by an" \
        "error GOAWAY after the graceful one, as mod_http2's -902:" \
        "docs/tls.md)"
}

rt_load_start() { # DIR DOMAINFILE
    local w
    RT_LOAD_DIR=$1
    RT_LOAD_PIDS=()
    # Where the backend's access log stood: rt_load_backend_twice reads on.
    RT_LOAD_BACKEND_FROM=$(stat -c %s "$POOL_DIR/backend/logs/access_log" \
                           2>/dev/null || echo 0)
    mkdir -p "$RT_LOAD_DIR"
    rm -f "$RT_LOAD_DIR/stop"
    for ((w = 1; w <= RT_LOAD_NEW; w++)); do
        _rt_load_worker new "$w" "$2" "$RT_LOAD_DIR/new$w.log" &
        RT_LOAD_PIDS+=($!)
    done
    for ((w = 1; w <= RT_LOAD_KA; w++)); do
        _rt_load_worker ka "$w" "$2" "$RT_LOAD_DIR/ka$w.log" &
        RT_LOAD_PIDS+=($!)
    done
}

rt_load_stop() {
    local pid
    [ ${#RT_LOAD_PIDS[@]} -gt 0 ] || return 0
    touch "$RT_LOAD_DIR/stop" 2>/dev/null
    for pid in "${RT_LOAD_PIDS[@]}"; do
        if kill -0 "$pid" 2>/dev/null && [ ! -d "$RT_LOAD_DIR" ]; then
            kill "$pid" 2>/dev/null || true
        fi
        wait "$pid" 2>/dev/null || true
    done
    RT_LOAD_PIDS=()
}

# rt_load_counts [SINCE [UNTIL]]: "requests failed new keepalive" of
# batches started in [SINCE, UNTIL)
rt_load_counts() {
    cat "$RT_LOAD_DIR"/*.log 2>/dev/null | awk -v since="${1:-0}" \
        -v until="${2:-9999999999}" '
        $1 == "T" { t = $2; next }
        $1 == "R" && t >= since && t < until {
            r++
            if ($2 != "200") f++
            if ($4 ~ /\/new\?/) nw++; else ka++
        }
        END { printf "%d %d %d %d\n", r, f, nw, ka }'
}

# rt_load_backend_twice: the load's request lines ("GET /new?w=..." or
# "GET /ka?w=...", each URL sent once, or twice when a GOAWAY refused it)
# that the backend logged more than once since rt_load_start, with the
# count; nothing when each reached it at most once.
rt_load_backend_twice() {
    _rt_load_backend_lines \
        | awk '{ n[$0]++ } END { for (r in n) if (n[r] > 1) print n[r], r }'
}

# rt_load_backend_seen: how many of the load's requests the backend logged
# since rt_load_start (at least the 200s of rt_load_counts, or the check
# above looked at nothing).
rt_load_backend_seen() {
    _rt_load_backend_lines | wc -l
}

# The load's request lines in the backend's access log since rt_load_start.
_rt_load_backend_lines() {
    tail -c +"$((RT_LOAD_BACKEND_FROM + 1))" \
        "$POOL_DIR/backend/logs/access_log" 2>/dev/null \
        | awk -F'"' '$2 ~ /^GET \/(new|ka)\?w=/ { print $2 }'
}

# rt_load_failures [SINCE [UNTIL]]: the failed requests (for diagnosis)
rt_load_failures() {
    cat "$RT_LOAD_DIR"/*.log 2>/dev/null | awk -v since="${1:-0}" \
        -v until="${2:-9999999999}" '
        $1 == "T" { t = $2; next }
        $1 == "R" && t >= since && t < until && $2 != "200" { print "batch@" t, $0 }'
}

# --- sampling ------------------------------------------------------------------

# One line per sample:
#   TIME lb1 lb2 lb3 st1 st2 st3
# lbN: HAProxy's status of proxyN (spaces removed, e.g. DRAIN(agent)),
# then ":" and its weight; stN: the proxy's /certsync-status state and
# health ("idle/ready"; "-" for a field not there yet), "unreachable"
# when it does not answer 200 within 1 s.
# In Perl (core modules only): one process, so that the sampling keeps
# its pace on a loaded machine.
_rt_sampler() { # file
    local ports=() n
    for n in 1 2 3; do
        ports+=("$(pool_proxy_port $n status)")
    done
    perl -MIO::Socket::UNIX -MIO::Socket::INET -MIO::Select \
         -MTime::HiRes=time,sleep -e '
use strict;
my ($sock, $out, $ms, @ports) = @ARGV;
open(my $fh, ">>", $out) or die "$out: $!\n";
$fh->autoflush(1);
sub slurp {    # all a socket says within 1 s
    my ($c, $secs) = @_;
    my $sel = IO::Select->new($c);
    my ($buf, $end) = ("", time + ($secs || 1));
    while (time < $end && $sel->can_read($end - time)) {
        my $n = sysread($c, $buf, 65536, length $buf);
        last unless $n;
    }
    return $buf;
}
while (!-e "$out.stop") {
    my $t0 = time;
    my %lb;
    if (my $s = IO::Socket::UNIX->new(Peer => $sock)) {
        print $s "show stat\n";
        for (split /\n/, slurp($s, 2)) {
            my @f = split /,/;
            next unless @f > 18 && $f[0] eq "proxies"
                        && $f[1] =~ /^proxy([123])$/;
            my $n = $1;
            (my $st = $f[17]) =~ s/ //g;
            $lb{$n} = "$st:$f[18]";
        }
    }
    my @st;
    for my $p (@ports) {
        my $r = "unreachable";
        my $c = IO::Socket::INET->new(PeerAddr => "127.0.0.1",
                                      PeerPort => $p, Timeout => 1);
        if ($c) {
            print $c "GET /certsync-status HTTP/1.0\r\nHost: localhost\r\n\r\n";
            my $a = slurp($c);
            if ($a =~ m{^HTTP/1\.\d 200}) {
                # No "state" before the first sync cycle ends: "-".
                my $s = $a =~ /^ "state": "([^"]*)"/m ? $1 : "-";
                my $h = $a =~ /^ "health": "([^"]*)"/m ? $1 : "-";
                $s =~ s/\s/_/g;
                $r = "$s/$h";
            }
        }
        push @st, $r;
    }
    printf $fh "%.3f %s %s %s %s\n", $t0, map({ $lb{$_} // "?" } 1 .. 3),
        join(" ", @st);
    my $left = $ms / 1000 - (time - $t0);
    sleep($left) if $left > 0;
}' "$POOL_DIR/haproxy/haproxy.sock" "$1" "$RT_SAMPLE_MS" "${ports[@]}"
}

rt_sampler_start() { # file
    RT_SAMPLE_FILE=$1
    rm -f "$1.stop"
    _rt_sampler "$1" &
    RT_SAMPLER_PID=$!
}

rt_sampler_stop() {
    [ -n "${RT_SAMPLER_PID:-}" ] || return 0
    touch "$RT_SAMPLE_FILE.stop"
    wait "$RT_SAMPLER_PID" 2>/dev/null
    RT_SAMPLER_PID=
}

# The awk test for "proxy out of rotation" in a sample: HAProxy says it is
# not UP (DRAIN, DOWN, MAINT, NOLB, or weight 0), or it says it is
# draining/restarting/rolling back, or it does not answer.
_RT_OUT_AWK='
function out(lb, st) {
    # "?": no answer from the stats socket in this sample
    if (lb != "?" && (lb !~ /^UP/ || lb ~ /:0$/)) return 1
    if (st ~ /^(draining|restarting|rolling-back|failed)/ || st ~ /\/drain$/) return 1
    if (st == "unreachable") return 1
    return 0
}'

# _RT_COUNT_AWK: n, the proxies out of rotation in this sample (but SKIP),
# for the samples from FROM to TO
_RT_COUNT_AWK=$_RT_OUT_AWK'
NF >= 7 && $1 >= from && $1 < to {
    n = 0
    for (i = 1; i <= 3; i++)
        if (i != skip && out($(i + 1), $(i + 4))) n++
'

# rt_max_out FILE [FROM [TO [SKIP]]]: "MAX SAMPLES"
rt_max_out() {
    awk -v from="${2:-0}" -v to="${3:-9999999999}" -v skip="${4:-0}" \
        "$_RT_COUNT_AWK"'
            if (n > max) max = n
            samples++
        }
        END { printf "%d %d\n", max, samples }' "$1"
}

# rt_out_samples FILE N [FROM [TO]]: samples showing proxy N out of rotation
rt_out_samples() {
    awk -v p="$2" -v from="${3:-0}" -v to="${4:-9999999999}" "$_RT_OUT_AWK"'
        NF >= 7 && $1 >= from && $1 < to && out($(p + 1), $(p + 4)) { n++ }
        END { print n + 0 }' "$1"
}

# rt_overlaps FILE [FROM [TO [SKIP]]]: the samples with more than one out
rt_overlaps() {
    awk -v from="${2:-0}" -v to="${3:-9999999999}" -v skip="${4:-0}" \
        "$_RT_COUNT_AWK"'
            if (n > 1) print
        }' "$1"
}

# rt_out_periods FILE N: "START END" of each period proxy N was out
rt_out_periods() {
    awk -v p="$2" "$_RT_OUT_AWK"'
        NF >= 7 {
            o = out($(p + 1), $(p + 4))
            if (o && !in_) { start = $1; in_ = 1 }
            if (!o && in_) { printf "%s %s\n", start, $1; in_ = 0 }
            last = $1
        }
        END { if (in_) printf "%s %s\n", start, last }' "$1"
}

# --- CertService's database, logs -----------------------------------------------

# rt_lease_of HOST: live leases of HOST ("id expires"), from the database
rt_lease_of() {
    command -v sqlite3 >/dev/null 2>&1 || return 2
    sqlite3 -readonly -cmd '.timeout 5000' -separator ' ' \
        "$POOL_DIR/cs/db/certservice.db" \
        "SELECT id, expires FROM cs_leases WHERE host = '$1'
           AND expires > strftime('%s', 'now')" 2>/dev/null
}

# rt_log_time LINE: the epoch seconds (with fraction) of an error_log line
rt_log_time() {
    local stamp
    stamp=$(sed -n 's/^\[\([^]]*\)\].*/\1/p' <<<"$1")
    # "Sun Nov 22 11:59:12.278930 2026"
    date -d "$(awk '{ split($4, t, "."); print $2, $3, $5, t[1] }' <<<"$stamp")" \
        +%s 2>/dev/null | tr -d '\n'
    awk '{ split($4, t, "."); printf ".%s\n", substr(t[2], 1, 3) }' <<<"$stamp"
}

# rt_log_lines N TAG [SINCE]: proxy N's error_log lines with TAG logged at
# or after SINCE (epoch seconds)
rt_log_lines() {
    local line t
    grep -F "$2" "$POOL_DIR/proxy$1/logs/error_log" 2>/dev/null \
    | while IFS= read -r line; do
        t=$(rt_log_time "$line")
        if awk -v a="$t" -v b="${3:-0}" 'BEGIN { exit !(a >= b) }'; then
            echo "$t $line"
        fi
    done
}
