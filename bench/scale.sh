#!/bin/bash
#
# bench/scale.sh: vhost activation against dynamic activation, side by side
# in one run, at SCALE_SIZES domains (1,000 10,000 100,000).
#
# For each size a store is filled once (bench/mkstore: certificates from
# the pool's CA, keys sealed to its wrapping certificate); proxy 1 of the
# demo pool (t/lib/pool.sh, with a real CertService) runs vhost mode on
# a copy, proxy 2 dynamic mode, side by side:
#
#   cold start      from starting httpd until a handshake for the last
#                   domain of the manifest presents its certificate (each
#                   proxy started alone)
#   RSS             of the parent and of the largest worker process
#                   (after the handshake runs; dynamic: with its cache)
#   handshakes      SCALE_HS full TLS handshakes on new connections with
#                   SCALE_CONC client threads (t/dynamic/hsclient) per
#                   case, in SCALE_ROUNDS rounds interleaved between the
#                   modes (medians): one domain; random among the first
#                   SCALE_HOT (1,000) domains, warmed first (a working set
#                   that the dynamic cache holds); random among all
#   activation      SCALE_CHANGED (100) domains renewed on CertService,
#                   which both proxies sync, while a client loop runs
#                   handshakes on each: time until all of them are served,
#                   the longest handshake meanwhile (the restart stall in
#                   vhost mode) and failed handshakes
#
# A cache miss in dynamic mode reads the key from key.seal (AES-GCM, see
# lib/cs_seal.h); SCALE_SEAL=0 leaves it out so that every miss opens
# key.cms (RSA-OAEP and OpenSSL's decoders), for comparison.
#
# The dynamic proxy's cache and processes: SCALE_CACHE entries
# (CertSyncCacheSize, default 10000) in each of SCALE_PROCS worker
# processes (default 2); memory is about entries x bytes per entry x
# processes (docs/mod_certsync.md, "Sizing the cache").  SCALE_WARM_ALL=1
# makes one handshake on every name before the rounds, in every worker
# (SCALE_PROCS passes), so that a cache sized for every name holds them
# all when random names are measured.
#
# The sync phase (SCALE_SYNC=1, the default; issue 18, part 7): before
# the store is filled, CertService issues the SIZE domains dN.scale.test
# (PUT /v1/domains, SCALE_PUT_CLIENTS connections, 4), and a cold proxy
# (proxy 2, dynamic mode, an empty store) syncs them from cursor 0: the
# time from its start until its cursor reaches CertService's last change
# and the last domain presents the serial CertService issued ("time to
# serve all"), with its bundles/s and the daemon's RSS.  The later phases
# then run on mkstore's store as before (its cursor past these changes;
# the activation's PUTs are renewals of names CertService holds).
# Issuing through the API runs at 8 to 300 domains a second on 2 loaded
# cores, so only the first SCALE_SYNC_PUT (100) are PUT; the rest are
# rows that bench/mkstore -c makes (a certificate of the pool's CA for
# each name, one key for all and its one envelope: what CertService's
# local CA would store, less the key generation) and sqlite3 inserts into
# CertService's database with their changes in the feed (state and
# key_type copied from the PUT rows); the proxy fetches and verifies each
# as any bundle.  SCALE_SYNC_MAX (100000): larger sizes skip the sync
# phase (the table says so).
#
# Results are kept in SCALE_SAVE (/tmp/scale-results): the tables
# (rows.md, sync.md) and plot.dat/sync.dat, from which
# bench/scale_plot.sh makes the plot again.
#
# vhost mode runs up to SCALE_VHOST_MAX domains (10,000): at 100,000 its
# start alone takes minutes (see the issue's figures for stock httpd).
# Prints a Markdown table; with gnuplot, also writes SCALE_PLOT
# (docs/scale.png).  Needs the build tree (make), curl, jq, openssl.
set -u

top=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=../t/lib/pool.sh
. "$top/t/lib/pool.sh"

SIZES=${SCALE_SIZES:-1000 10000 100000}
VHOST_MAX=${SCALE_VHOST_MAX:-10000}
HS_N=${SCALE_HS:-3000}
CONC=${SCALE_CONC:-4}
CHANGED=${SCALE_CHANGED:-100}
ROUNDS=${SCALE_ROUNDS:-3}
HOT=${SCALE_HOT:-1000}
PLOT=${SCALE_PLOT:-$top/docs/scale.png}
HS=$top/t/dynamic/hsclient
# key.seal beside key.cms, as the sync daemon writes it; SCALE_SEAL=0: the
# store of a daemon without it (every miss opens key.cms)
SEAL=${SCALE_SEAL:-1}
MK=$top/bench/mkstore
SYNC=${SCALE_SYNC:-1}
SYNC_MAX=${SCALE_SYNC_MAX:-100000}
PUTC=${SCALE_PUT_CLIENTS:-4}
SYNC_PUT=${SCALE_SYNC_PUT:-100}
SAVE=${SCALE_SAVE:-/tmp/scale-results}

say() { echo "# $*" >&2; }

(cd "$top" && make -s t/dynamic/hsclient bench/mkstore >/dev/null) \
    || die "cannot build t/dynamic/hsclient and bench/mkstore"

cs_tmpdir certsuite-scale || die "mktemp failed"
work=$tmp
chmod 755 "$work"
on_cleanup() { pool_stop_all >/dev/null 2>&1; }

base=$(pool_pick_base) || die "no free ports"
PROCS=${SCALE_PROCS:-2}
CACHE=${SCALE_CACHE:-10000}
WARM_ALL=${SCALE_WARM_ALL:-0}
export POOL_SYNC_INTERVAL="2 1" POOL_PROCS=$PROCS POOL_LOGLEVEL=warn
export POOL_CACHE_SIZE=$CACHE
pool_init "$work/pool" "$base" >/dev/null || die "pool_init"
pool_pki >/dev/null || die "pool_pki"
pool_start_certservice || die "CertService"
pool_start_backend || die "backend"
tls=$(pool_proxy_port 1 tls)
cs_seq=0

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN{printf "%.1f", b-a}'; }
rss_mb() { awk '/^VmRSS/{printf "%.0f", $2/1024}' "/proc/$1/status" 2>/dev/null; }
field() { sed -n "s/.* $1 \([0-9.]*\).*/\1/p" <<<"$2"; }

# The serial of the current version of NAME in STORE (as hsclient prints).
store_serial() {
    openssl x509 -noout -serial -in "$1/live/$2/current/fullchain.pem" \
        | sed 's/^serial=0*//' | tr 'A-F' 'a-f'
}

# cs_put FILE: PUT every name of FILE on one connection; "NAME SERIAL"
# lines on stdout; the last seq in $work/seq
cs_put() {
    local cfg=$work/put.cfg name
    sed 's|.*|url = "'"$POOL_CS_URL"'/v1/domains/&"|' "$1" >"$cfg"
    curl -sS --noproxy '*' --max-time 900 --cacert "$POOL_PKI/clients-ca.crt" \
        --cert "$POOL_PKI/admin.crt" --key "$POOL_PKI/admin.key" -X PUT \
        -H 'Content-Type: application/json' --data-binary '{}' -w '\n' \
        -K "$cfg" >"$work/put.json"
    jq -r 'select(.seq != null) | .seq' "$work/put.json" | sort -n | tail -n 1 \
        >"$work/seq"
    jq -r 'select(.serial != null) | "\(.domain) \(.serial)"' "$work/put.json" \
    | while read -r name s; do
        echo "$name $(tr 'A-F' 'a-f' <<<"$s" | sed 's/^0*//')"
    done
}

# put_all NAMES: PUT every name on PUTC connections at once; "NAME SERIAL"
# lines in $work/all.want, the highest seq in $work/seq
put_all() {
    local f i
    rm -f "$work"/part.*
    split -n "r/$PUTC" -d "$1" "$work/part."
    i=0
    for f in "$work"/part.[0-9]*; do
        sed 's|.*|url = "'"$POOL_CS_URL"'/v1/domains/&"|' "$f" >"$f.cfg"
        curl -sS --noproxy '*' --max-time 7200 \
            --cacert "$POOL_PKI/clients-ca.crt" \
            --cert "$POOL_PKI/admin.crt" --key "$POOL_PKI/admin.key" -X PUT \
            -H 'Content-Type: application/json' --data-binary '{}' -w '\n' \
            -K "$f.cfg" >"$f.json" &
        i=$((i + 1))
    done
    wait
    cat "$work"/part.[0-9]*.json >"$work/all.json"
    jq -r 'select(.seq != null) | .seq' "$work/all.json" | sort -n \
        | tail -n 1 >"$work/seq"
    jq -r 'select(.serial != null) | "\(.domain) \(.serial)"' "$work/all.json" \
    | while read -r name s; do
        echo "$name $(tr 'A-F' 'a-f' <<<"$s" | sed 's/^0*//')"
    done >"$work/all.want"
}

# sync_phase SIZE: CertService issues the SIZE domains, a cold proxy 2
# (dynamic, empty store) syncs them; a row of sync.md and sync.dat
sync_phase() {
    local size=$1 d t0 fill last want sync= st cur issued dpid drss fails
    local nput=$SYNC_PUT db=$POOL_DIR/cs/db/certservice.db
    [ "$nput" -gt "$size" ] && nput=$size
    say "sync phase, $size domains: CertService issues $nput ($PUTC clients)"
    t0=$(now)
    head -n "$nput" "$work/names-$size" >"$work/names-put"
    put_all "$work/names-put"
    issued=$(wc -l <"$work/all.want")
    say "  $issued issued by PUT in $(since "$t0") s"
    if [ "$size" -gt "$nput" ]; then
        rm -f "$work"/rows.*
        "$MK" -c "$work/rows" "$POOL_PKI/ca.crt" "$POOL_PKI/ca.key" \
            "$POOL_PKI/wrap1.crt" "$size" scale.test 2 $((nput + 1)) \
            || die "mkstore -c"
        chmod 644 "$work"/rows.*
        {
            echo ".bail on"
            echo "CREATE TEMP TABLE f(name TEXT, serial TEXT, nb INTEGER, na INTEGER, chain TEXT, cms TEXT);"
            for f in "$work"/rows.[0-9]*; do echo ".import --csv $f f"; done
            cat <<'SQL'
BEGIN IMMEDIATE;
CREATE TEMP TABLE b AS SELECT (SELECT MAX(seq) FROM cs_changes) AS s,
  (SELECT state FROM cs_domains LIMIT 1) AS st,
  (SELECT key_type FROM cs_domains LIMIT 1) AS kt,
  CAST(strftime('%s', 'now') AS INTEGER) AS now;
INSERT INTO cs_domains (name, state, key_type, seq, serial, not_before,
  not_after, chain_pem, key_cms, last_error, updated, actor)
  SELECT f.name, b.st, b.kt, b.s + f.rowid, f.serial, f.nb, f.na, f.chain,
  f.cms, NULL, b.now, 'scale-fill' FROM f, b
  WHERE f.name NOT IN (SELECT name FROM cs_domains);
INSERT INTO cs_changes (seq, domain, op, serial, not_after, actor, at)
  SELECT seq, name, 'upsert', serial, not_after, actor, updated
  FROM cs_domains WHERE actor = 'scale-fill' AND seq > (SELECT s FROM b);
UPDATE cs_counter SET value = (SELECT MAX(seq) FROM cs_changes)
  WHERE name = 'seq';
COMMIT;
SQL
        } >"$work/fill.sql"
        if [ -n "$POOL_USER" ]; then
            runuser -u "$POOL_USER" -- sqlite3 "$db" <"$work/fill.sql" \
                || die "fill"
        else
            sqlite3 "$db" <"$work/fill.sql" || die "fill"
        fi
        # what CertService holds now (an earlier size's names included)
        sqlite3 "$db" "SELECT name || ' ' || serial FROM cs_domains
                       WHERE actor = 'scale-fill'" >>"$work/all.want"
        issued=$(wc -l <"$work/all.want")
    fi
    cs_seq=$(sqlite3 "$db" "SELECT value FROM cs_counter WHERE name = 'seq'")
    fill=$(since "$t0")
    say "  CertService holds $issued domains after $fill s; its last seq $cs_seq"
    last=d$size.scale.test
    want=$(awk -v n="$last" '$1 == n {print $2}' "$work/all.want")
    echo "$last" >"$work/last"
    d=$POOL_DIR/proxy2
    pool_stop_proxy 2 >/dev/null 2>&1
    rm -rf "$d"
    mkdir -p "$d/logs" "$d/run" "$d/store"
    t0=$(now)
    POOL_ACTIVATION=dynamic pool_start_proxy 2 >/dev/null 2>&1
    while [ "$(since "$t0" | cut -d. -f1)" -lt 7200 ]; do
        st=$(pool_proxy_status 2 2>/dev/null)
        cur=$(jq -r '.cursor // 0' <<<"$st" 2>/dev/null)
        if [ "${cur:-0}" -ge "$cs_seq" ]; then
            "$HS" -p "$(pool_proxy_port 2 tls)" -f "$work/last" \
                -o "$work/last.out" >/dev/null
            if [ "$(awk '{print $2}' "$work/last.out")" = "$want" ]; then
                sync=$(since "$t0")
                break
            fi
        fi
        sleep 0.5
    done
    dpid=$(ps -o pid=,user= --ppid "$(cat "$d/run/httpd.pid")" \
           | awk '$2 == "root" {print $1; exit}')
    drss=$(rss_mb "${dpid:-0}")
    fails=$(jq -r '.failures | length' <<<"$st" 2>/dev/null)
    say "  cold sync: ${sync:-not within 7200 s} s; daemon RSS $drss MB;" \
        "failed bundles ${fails:-?}; $(grep -c CY00004 "$d/logs/error_log") CY00004"
    printf '| %s | %s (%s /s) | %s | %s | %s | %s |\n' "$size" "$fill" \
        "$(awk -v n="$issued" -v t="$fill" 'BEGIN{printf "%.0f", n/t}')" \
        "${sync:-not within 7200 s}" \
        "$(awk -v n="$size" -v t="${sync:-0}" 'BEGIN{if (t > 0) printf "%.0f", n/t; else print "-"}')" \
        "$drss" "${fails:-?}" >>"$work/sync.md"
    echo "$size ${sync:-0}" >>"$work/sync.dat"
    pool_stop_proxy 2 >/dev/null 2>&1
    rm -rf "$d"
}

# Proxy N runs MODE: proxy 1 vhost, proxy 2 dynamic.
proxy_of() { [ "$1" = vhost ] && echo 1 || echo 2; }

# start MODE SIZE: proxy of MODE on its copy of the SIZE store; prints the
# cold start time (until the last domain serves) or fails
start() {
    local mode=$1 size=$2 n d last want t0
    n=$(proxy_of "$mode")
    d=$POOL_DIR/proxy$n
    pool_stop_proxy "$n" >/dev/null 2>&1
    rm -rf "$d"
    mkdir -p "$d/logs" "$d/run"
    if [ "$mode" = dynamic ]; then
        mv "$work/store-$size" "$d/store"
    else
        cp -a "$work/store-$size" "$d/store"
    fi
    echo "$cs_seq" >"$d/store/cursor"  # CertService's earlier changes: seen
    last=d$size.scale.test
    want=$(store_serial "$d/store" "$last")
    echo "$last" >"$work/last"
    t0=$(now)
    POOL_ACTIVATION=$mode pool_start_proxy "$n" >/dev/null 2>&1
    while [ "$(since "$t0" | cut -d. -f1)" -lt 900 ]; do
        "$HS" -p "$(pool_proxy_port "$n" tls)" -f "$work/last" \
            -o "$work/last.out" >/dev/null
        if [ "$(awk '{print $2}' "$work/last.out")" = "$want" ]; then
            since "$t0"
            return 0
        fi
        sleep 0.1
    done
    return 1
}

# hs MODE NAMES [hsclient args]: one hsclient run against MODE's proxy
hs() {
    local mode=$1 f=$2
    shift 2
    "$HS" -p "$(pool_proxy_port "$(proxy_of "$mode")" tls)" -f "$f" \
        -c "$CONC" "$@"
}

# child_rss MODE: the largest worker of MODE's proxy (MB)
child_rss() {
    local n d pid c r max=0
    n=$(proxy_of "$1")
    d=$POOL_DIR/proxy$n
    pid=$(cat "$d/run/httpd.pid")
    for c in $(pgrep -P "$pid"); do
        # the sync daemon is a child too, the one that runs as root
        # (CY00003 names it, but is not logged at POOL_LOGLEVEL=warn)
        [ "$(ps -o user= -p "$c")" = root ] && continue
        r=$(rss_mb "$c")
        [ "${r:-0}" -gt "$max" ] && max=$r
    done
    echo "$max"
}

# total_rss MODE: the parent, the workers and the sync daemon of MODE's
# proxy (MB)
total_rss() {
    local pid c sum
    pid=$(cat "$POOL_DIR/proxy$(proxy_of "$1")/run/httpd.pid")
    sum=$(rss_mb "$pid")
    for c in $(pgrep -P "$pid"); do
        sum=$((sum + $(rss_mb "$c")))
    done
    echo "$sum"
}

median() { sort -n | awk '{a[NR]=$1} END{print (NR ? a[int((NR+1)/2)] : "-")}'; }

# measure SIZE MODE...: everything for the modes running side by side
measure() {
    local size=$1 mode r kind f args out act
    shift
    hot=$work/hot-$size
    head -n "$HOT" "$work/names-$size" >"$hot"
    head -n 1 "$work/names-$size" >"$work/one"
    for mode in "$@"; do
        # warm: the one domain, and the hot set in every worker
        hs "$mode" "$work/one" -n 200 >/dev/null
        hs "$mode" "$hot" -r -n $((HOT * 8)) >/dev/null
        if [ "$WARM_ALL" = 1 ] && [ "$mode" = dynamic ]; then
            local w t0
            t0=$(now)
            for ((w = 0; w < PROCS; w++)); do
                hs "$mode" "$work/names-$size" >/dev/null
            done
            say "  warm-up: every name $PROCS times in $(since "$t0") s," \
                "largest worker RSS $(child_rss "$mode") MB, whole httpd" \
                "$(total_rss "$mode") MB"
        fi
    done
    : >"$work/hs"
    for ((r = 1; r <= ROUNDS; r++)); do
        for kind in one hot random; do
            for mode in "$@"; do
                case $kind in
                    one) f=$work/one; args=() ;;
                    hot) f=$hot; args=(-r) ;;
                    random) f=$work/names-$size; args=(-r) ;;
                esac
                out=$(hs "$mode" "$f" "${args[@]}" -n $((HS_N / ROUNDS)))
                echo "$mode $kind $(field rate "$out") $(field p99 "$out") $(field failed "$out")" \
                    >>"$work/hs"
                say "  round $r $mode $kind: $out"
            done
        done
    done

    # Activation: 100 domains renewed on CertService, every proxy syncs
    # them; a client loop on each proxy meanwhile.
    shuf -n "$CHANGED" "$work/names-$size" >"$work/changed"
    rm -f "$work/stop"
    for mode in "$@"; do
        "$HS" -p "$(pool_proxy_port "$(proxy_of "$mode")" tls)" \
            -f "$work/names-$size" -r -c 2 -u "$work/stop" \
            >"$work/loop-$mode" &
    done
    sleep 1
    cs_put "$work/changed" >"$work/changed.want"
    cs_seq=$(cat "$work/seq")
    t0=$(now)
    for mode in "$@"; do
        eval "act_$mode="
    done
    while [ "$(since "$t0" | cut -d. -f1)" -lt 900 ]; do
        local pending=0
        for mode in "$@"; do
            [ -n "$(eval echo "\${act_$mode}")" ] && continue
            "$HS" -p "$(pool_proxy_port "$(proxy_of "$mode")" tls)" \
                -f "$work/changed" -c 2 -o "$work/changed.got" >/dev/null
            if [ -z "$(join <(sort "$work/changed.want") \
                            <(sort "$work/changed.got") | awk '$2 != $3')" ]
            then
                eval "act_$mode=$(since "$t0")"
            else
                pending=1
            fi
        done
        [ $pending = 0 ] && break
        sleep 0.5
    done
    sleep 1
    touch "$work/stop"
    wait

    # The sync daemon at this size (issue 18: at 1,000,000 it failed every
    # cycle): its errors, its memory, what the status page and the agent
    # say, and a page of ?domains.
    for mode in "$@"; do
        local n=$(proxy_of "$mode") log dpid st
        log=$POOL_DIR/proxy$n/logs/error_log
        # the daemon: the parent's child that runs as root (the workers
        # do not; CY00003 is not logged at POOL_LOGLEVEL=warn)
        dpid=$(ps -o pid=,user= --ppid "$(cat "$POOL_DIR/proxy$n/run/httpd.pid")" \
               | awk '$2 == "root" {print $1; exit}')
        st=$(pool_proxy_status "$n" 2>/dev/null)
        say "  $mode sync: CY00004 $(grep -c CY00004 "$log"), CY00011" \
            "$(grep -c CY00011 "$log"), CY00027 $(grep -c CY00027 "$log");" \
            "daemon RSS $(rss_mb "${dpid:-0}") MB; status health" \
            "$(jq -r '.health + " / lb " + .load_balancer + " / degraded " + (.degraded|tostring)' <<<"$st" 2>/dev/null);" \
            "manifest $(stat -c %s "$POOL_DIR/proxy$n/store/manifest") bytes;" \
            "generation slots $(jq -r '.dynamic.generation_slots // "-"' <<<"$st" 2>/dev/null)"
        [ "$mode" = dynamic ] && say "  ?domains&limit=3: $(pool_proxy_status "$n" 'domains&limit=3' \
            | jq -c '.dynamic | {served, next}' 2>/dev/null)"
        grep -h 'CY00004\|CY00011\|CY00027' "$log" | tail -n 3 | sed 's/^/#   /' >&2
    done

    for mode in "$@"; do
        local n=$(proxy_of "$mode") cold pone phot prnd rone rhot rrnd loop
        cold=$(cat "$work/cold-$mode")
        pone=$(awk -v m="$mode" '$1==m && $2=="one"{print $4}' "$work/hs" | median)
        phot=$(awk -v m="$mode" '$1==m && $2=="hot"{print $4}' "$work/hs" | median)
        prnd=$(awk -v m="$mode" '$1==m && $2=="random"{print $4}' "$work/hs" | median)
        rone=$(awk -v m="$mode" '$1==m && $2=="one"{print $3}' "$work/hs" | median)
        rhot=$(awk -v m="$mode" '$1==m && $2=="hot"{print $3}' "$work/hs" | median)
        rrnd=$(awk -v m="$mode" '$1==m && $2=="random"{print $3}' "$work/hs" | median)
        loop=$(cat "$work/loop-$mode")
        act=$(eval echo "\${act_$mode}")
        say "  $mode activation ${act:-(not within 900 s)} s; loop: $loop"
        say "  $mode: whole httpd RSS $(total_rss "$mode") MB (parent," \
            "workers, sync daemon); cache $CACHE x $PROCS processes"
        printf '| %s | %s | %s | %s | %s | %s / %s | %s / %s | %s / %s | %s | %s | %s | %s |\n' \
            "$size" "$mode" "$cold" \
            "$(rss_mb "$(cat "$POOL_DIR/proxy$n/run/httpd.pid")")" \
            "$(child_rss "$mode")" "$rone" "$pone" "$rhot" "$phot" \
            "$rrnd" "$prnd" "${act:--}" "$(field max "$loop")" \
            "$(awk '{s+=$5} END{print s+0}' <(grep "^$mode " "$work/hs"))/$(field failed "$loop")" \
            "$(grep -c 'AH00493' "$POOL_DIR/proxy$n/logs/error_log")" \
            >>"$work/rows"
        # size mode cold rss p99(one hot random) activation rate(one hot random)
        echo "$size $mode $cold $(child_rss "$mode") $pone $phot $prnd ${act:-0} $rone $rhot $rrnd" \
            >>"$work/plot.dat"
    done
    pool_stop_proxy 1 >/dev/null 2>&1
    pool_stop_proxy 2 >/dev/null 2>&1
}

: >"$work/rows"
: >"$work/plot.dat"
: >"$work/sync.md"
: >"$work/sync.dat"
for size in $SIZES; do
    seq 1 "$size" | sed 's/.*/d&.scale.test/' >"$work/names-$size"
    if [ "$SYNC" = 1 ] && [ "$size" -le "$SYNC_MAX" ]; then
        sync_phase "$size"
    elif [ "$SYNC" = 1 ]; then
        printf '| %s | not run (SCALE_SYNC_MAX %s) | | | | |\n' "$size" \
            "$SYNC_MAX" >>"$work/sync.md"
    fi
    say "filling a store with $size domains"
    seal_key=$POOL_PKI/wrap1.key
    [ "$SEAL" = 0 ] && seal_key=-
    t0=$(now)
    "$MK" "$work/store-$size" "$POOL_PKI/ca.crt" "$POOL_PKI/ca.key" \
        "$POOL_PKI/wrap1.crt" "$seal_key" "$size" scale.test 2 \
        || die "mkstore"
    say "  $(since "$t0") s"
    # As the sync daemon leaves them: the workers' group may read the
    # sealed keys (dynamic mode); plaintext keys stay 0600.
    find "$work/store-$size" -name 'key.[cs]*' -exec chmod 640 {} +
    if [ "$(id -u)" = 0 ]; then
        find "$work/store-$size" -name 'key.[cs]*' \
            -exec chgrp "$POOL_GROUP" {} +
    fi
    modes=dynamic
    [ "$size" -le "$VHOST_MAX" ] && modes="vhost dynamic"
    for mode in $modes; do
        say "$mode, $size domains: starting"
        start "$mode" "$size" >"$work/cold-$mode" \
            || die "$mode did not serve within 900 s"
        say "  cold start $(cat "$work/cold-$mode") s"
    done
    # shellcheck disable=SC2086
    measure "$size" $modes
done

echo
echo "Handshakes: $HS_N per case in $ROUNDS interleaved rounds (medians), $CONC"
echo "client threads, a new connection and a full handshake each; hot: random"
echo "among the first $HOT domains (warmed first); random: among all."
echo "Activation: $CHANGED domains renewed on CertService; meanwhile a loop of"
echo "2 client threads on each proxy (longest handshake, failed ones)."
echo
echo "| domains | mode | cold start s | parent RSS MB | largest worker RSS MB | 1 domain: hs/s / p99 ms | hot: hs/s / p99 ms | random: hs/s / p99 ms | activation s | longest handshake during activation ms | failed (measured/loop) | graceful restarts |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
cat "$work/rows"

if [ -s "$work/sync.md" ]; then
    echo
    echo "Sync phase: CertService issues N domains (PUT, $PUTC clients), then a"
    echo "cold proxy (dynamic mode, empty store) syncs them from cursor 0."
    echo
    echo "CertService: the first $SYNC_PUT PUT, the rest rows of bench/mkstore -c"
    echo "inserted by sqlite3 (see the header)."
    echo
    echo "| domains | CertService: N held after s (/s) | cold sync until every domain is served, s | bundles/s | sync daemon RSS MB | failed bundles |"
    echo "|---|---|---|---|---|---|"
    cat "$work/sync.md"
fi

mkdir -p "$SAVE"
cp "$work/rows" "$SAVE/rows.md"
cp "$work/sync.md" "$work/plot.dat" "$work/sync.dat" "$SAVE/"
if command -v gnuplot >/dev/null 2>&1 && [ -s "$work/plot.dat" ]; then
    "$top/bench/scale_plot.sh" "$SAVE/plot.dat" "$SAVE/sync.dat" "$PLOT" \
        && echo && echo "plot: $PLOT (data in $SAVE)"
fi
