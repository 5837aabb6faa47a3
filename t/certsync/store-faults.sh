#!/bin/bash
#
# t/certsync/store-faults.sh: a proxy's store that cannot be written (issue 17,
# "Disk full and read-only store").
#
# The demo pool of t/lib/pool.sh, cut to CertService, the backend, two
# proxies and HAProxy (httpchk on /certsync-health, agent-check on each
# proxy's CertSyncAgent).  Each proxy's store (CertSyncStoreDir) is a
# small ext4 image, loop-mounted with errors=remount-ro.  Both proxies get
# each fault at once (all proxies failing alike):
#
#   1. disk full: the stores are filled (dd) and then new domains and a
#      renewal are issued: no store can take them.  Shown: what was
#      served keeps being served (TLS handshakes still present the old
#      serials, through HAProxy too); /certsync-status tells the truth
#      (degraded, the store's "No space left on device", the lag behind
#      CertService, the last error); the metrics say certsync_degraded 1;
#      the agent-check answers "ready up #certsync degraded: ..." and
#      /certsync-health 200, so HAProxy keeps both proxies UP.  Space
#      freed: both proxies catch up alone (new domains and the renewal
#      served, degraded false, nothing behind, the agent's plain "ready").
#   2. read-only: the stores turn read-only after an ext4 error (sysfs
#      trigger_fs_error; `mount -o remount,ro` is refused while the sync
#      daemon holds its lock file open for writing, the kernel's own
#      emergency remount is not), then new domains and a renewal: the same
#      checks with "Read-only file system".  Remounted read-write (the
#      image checked with e2fsck and mounted again at the same place):
#      both proxies catch up alone.
#   3. a status page that reads state.json (an httpd without a sync
#      daemon): every input of t/fuzz/corpus/state as state.json, the
#      JSON, HTML, metrics and mod_status pages answer 200, no worker
#      dies.
#
# Needs root (mount, loop devices, ext4's sysfs trigger), haproxy,
# mkfs.ext4, e2fsck, curl, jq, openssl.  Skips (exit 0) without them.
# Talks only to 127.0.0.1/127.0.0.2; everything it starts and mounts is
# stopped and unmounted on every way out.
#
# Environment: FAULTS_NEW new domains per fault [20]; FAULTS_ONLY=state
# runs part 3 alone (no pool, no mount); CERTSUITE_KEEP as in
# t/lib/certsuite.sh (the images are kept too, unmounted).
set -u
export LC_ALL=C

top=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=../lib/pool.sh
. "$top/t/lib/pool.sh"   # and t/lib/certsuite.sh

NEW=${FAULTS_NEW:-20}
ONLY=${FAULTS_ONLY:-}   # "state": only part 3
IMG_MB=16
tap_init

skip() { echo "1..0 # SKIP $*"; exit 0; }
[ "$(id -u)" = 0 ] || skip "needs root (loop mounts)"
for p in curl jq openssl haproxy mkfs.ext4 e2fsck losetup; do
    command -v "$p" >/dev/null || skip "$p not found"
done
[ -e /dev/loop-control ] || skip "no loop devices"

cs_tmpdir certsync-faults || bail "mktemp failed"
chmod 755 "$tmp"
mounted=()
on_cleanup() {
    local m
    pool_stop_all >/dev/null 2>&1
    if [ "${nfail:-0}" != 0 ]; then
        pool_log_tail 40 | sed 's/^/# /'
    fi
    # Unmounted before cs_cleanup removes $tmp (the stores hold keys).
    for m in "${mounted[@]}"; do
        umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null
    done
}

# --- Stores on their own small filesystems ----------------------------------

# store_mount N: proxy N's store on a fresh (or checked) ext4 image
store_dir() { echo "$POOL_DIR/proxy$1/store"; }
store_mount() {
    local img=$tmp/store$1.img dir
    dir=$(store_dir "$1")
    mkdir -p "$dir"
    if [ ! -f "$img" ]; then
        truncate -s "${IMG_MB}M" "$img" && mkfs.ext4 -q -F "$img" || return 1
    fi
    mount -o loop,errors=remount-ro "$img" "$dir" || return 1
    mounted+=("$dir")
}
store_fill() { # N: no block left (root's reserved ones included)
    local dir
    dir=$(store_dir "$1")
    dd if=/dev/zero of="$dir/filler" bs=64k >/dev/null 2>&1
    # what dd could not take: small files until the inodes or the last
    # block fragments are gone
    for i in $(seq 1 200); do
        echo x >"$dir/filler.$i" 2>/dev/null || break
    done
    sync
}
store_free() { rm -f "$(store_dir "$1")"/filler*; sync; }
store_break() { # N: ext4 turns read-only after an error
    local dir dev
    dir=$(store_dir "$1")
    dev=$(findmnt -n -o SOURCE "$dir") || return 1
    echo faults.sh >"/sys/fs/ext4/${dev##*/}/trigger_fs_error"
}
# store_repair N: as an operator would: the broken filesystem unmounted
# (lazily: the sync daemon holds its lock file there until the next
# restart), checked and mounted again at the same place.  A copy of the
# image is checked and mounted: the old filesystem lives on, detached,
# until that daemon exits, and one image must not be mounted twice.
store_repair() {
    local dir img=$tmp/store$1.img
    dir=$(store_dir "$1")
    umount -l "$dir" || return 1
    cp --sparse=always "$img" "$img.fixed" || return 1
    e2fsck -fy "$img.fixed" >/dev/null 2>&1
    [ $? -le 1 ] || return 1
    mv "$img.fixed" "$img.2" && mount -o loop,errors=remount-ro "$img.2" "$dir"
}

# --- Observing ---------------------------------------------------------------

status() { pool_proxy_status "$1" 2>/dev/null; }
metric() { # N NAME: a value of proxy N's metrics
    pool_proxy_status "$1" metrics 2>/dev/null \
        | awk -v m="$2" '$1 == m { print $2 }'
}
agent() { # N: what proxy N's agent answers (one line)
    local port line
    port=$(pool_proxy_port "$1" agent)
    exec 5<>"/dev/tcp/127.0.0.1/$port" || return 1
    IFS= read -r -t 5 line <&5
    exec 5<&-
    echo "$line"
}
health() { # N: code and body of /certsync-health
    curl -sS --noproxy '*' --max-time 5 -w '%{http_code}' \
        "http://127.0.0.1:$(pool_proxy_port "$1" status)/certsync-health"
}
# wait_for SECONDS CMD...: until CMD succeeds (every 0.5 s)
wait_for() {
    local end=$((SECONDS + $1))
    shift
    until "$@"; do
        [ $SECONDS -lt $end ] || return 1
        sleep 0.5
    done
}
degraded_with() { # N TEXT: status degraded, a store error naming TEXT
    status "$1" | jq -e --arg t "$2" \
        '.degraded == true and (.store_errors | tostring | contains($t))
         and .behind > 0' >/dev/null
}
# served_all N FILE: proxy N presents every "name serial" of FILE
served_all() {
    local name want
    while read -r name want; do
        [ "$(pool_served_serial "$1" "$name")" = "$want" ] || return 1
    done <"$2"
}
caught_up() { # N FILE: serves FILE, and the status is clean again
    served_all "$1" "$2" \
    && status "$1" | jq -e '.degraded == false and .behind == 0
                            and (.store_errors | length) == 0' >/dev/null
}
# issue FILE NAME...: PUT each (new or renewed); "name serial" appended
issue() {
    local f=$1 name s
    shift
    for name in "$@"; do
        s=$(pool_add_domain "$name") || return 1
        echo "$name $s" >>"$f"
    done
}

# --- The pool ----------------------------------------------------------------

base=$(pool_pick_base) || bail "no free ports"
pool_init "$tmp/pool" "$base" || bail "pool_init"
if [ "$ONLY" != state ]; then
    pool_pki >/dev/null || bail "pool_pki"
    pool_start_certservice || bail "CertService did not start"
    pool_start_backend || bail "backend did not start"
    for px in 1 2; do
        store_mount $px || bail "cannot mount an ext4 image for proxy $px's store"
    done
    for px in 1 2; do
        pool_start_proxy $px || bail "proxy $px did not start"
    done
    pool_start_haproxy || bail "HAProxy did not start"
    ok "pool: CertService, 2 proxies with their stores on ${IMG_MB} MB ext4 images, HAProxy"

    : >"$tmp/served"
    issue "$tmp/served" one.faults.example two.faults.example \
        three.faults.example || bail "cannot issue"
    for px in 1 2; do
        wait_for 120 served_all $px "$tmp/served" \
            || bail "proxy $px does not serve the first domains"
    done
    wait_for 30 eval '[ "$(pool_lb_state 1)" = UP ] && [ "$(pool_lb_state 2)" = UP ]' \
        || bail "HAProxy does not see both proxies UP"
    ok "both proxies serve the first 3 domains, HAProxy sees them UP"
fi

# fault KIND TEXT BREAK...: the checks while both stores fail (TEXT: the
# error the status must name), after BREAK N broke each store
fault() {
    local kind=$1 text=$2 px i names=() line code old
    shift 2
    for px in 1 2; do
        "$@" $px
    done
    for ((i = 1; i <= NEW; i++)); do
        names+=("$kind$i.faults.example")
    done
    cp "$tmp/served" "$tmp/before"
    : >"$tmp/new"
    issue "$tmp/new" "${names[@]}" || bail "cannot issue"
    # a renewal of a served domain
    old=$(awk 'NR == 1 { print $1 }' "$tmp/served")
    issue "$tmp/new" "$old" || bail "cannot renew $old"

    for px in 1 2; do
        if wait_for 90 degraded_with $px "$text"; then
            ok "$kind: proxy $px's status is degraded with \"$text\", behind CertService"
        else
            notok "$kind: proxy $px's status is degraded with \"$text\", behind CertService"
            diag "$(status $px)"
        fi
    done
    for px in 1 2; do
        if served_all $px "$tmp/before"; then
            ok "$kind: proxy $px still serves what it served (old serial of $old)"
        else
            notok "$kind: proxy $px still serves what it served"
        fi
        if [ "$(pool_served_serial $px "${names[0]}")" != \
             "$(awk -v d="${names[0]}" '$1 == d { print $2 }' "$tmp/new")" ]
        then
            ok "$kind: proxy $px does not serve the new domains (its store cannot take them)"
        else
            notok "$kind: proxy $px serves ${names[0]} although its store is broken"
        fi
    done
    for px in 1 2; do
        status $px | jq -e '.last_error != null and .last_error_time > 0
                           and .service_cursor > .cursor
                           and .status_from == "shared memory"' >/dev/null \
            && ok "$kind: proxy $px's status has the last error, its time, both cursors" \
            || { notok "$kind: proxy $px's status has the last error, its time, both cursors"
                 diag "$(status $px)"; }
        [ "$(metric $px certsync_degraded)" = 1 ] \
        && [ "$(metric $px certsync_behind)" -gt 0 ] 2>/dev/null \
            && ok "$kind: proxy $px's metrics: certsync_degraded 1, certsync_behind $(metric $px certsync_behind)" \
            || notok "$kind: proxy $px's metrics say degraded and behind"
        line=$(agent $px)
        case $line in
            "ready up #certsync degraded: "*"$text"*)
                ok "$kind: proxy $px's agent-check: $line" ;;
            *) notok "$kind: proxy $px's agent-check keeps it ready, degraded: got '$line'" ;;
        esac
        code=$(health $px)
        case $code in
            "ready"*"degraded:"*"$text"*200)
                ok "$kind: proxy $px's /certsync-health: 200 ready, degraded" ;;
            *) notok "$kind: proxy $px's /certsync-health: 200 ready, degraded: got '$code'" ;;
        esac
    done
    # HAProxy asks every 500 ms (agent) and 1 s (httpchk): give it time
    sleep 3
    if [ "$(pool_lb_state 1)" = UP ] && [ "$(pool_lb_state 2)" = UP ]; then
        ok "$kind: HAProxy keeps both proxies UP (the pool is not emptied)"
    else
        notok "$kind: HAProxy keeps both proxies UP: $(pool_lb_state 1) $(pool_lb_state 2)"
    fi
    # what HAProxy keeps of the agent's description (stats: last_agt)
    diag "HAProxy on proxy1: $(pool_lb_cmd "show stat" | awk -F, \
        '$1 == "proxies" && $2 == "proxy1"' | tr ',' '\n' \
        | grep -m1 "degraded")"
    if pool_lb_request "$old" -o /dev/null; then
        ok "$kind: $old answers through HAProxy"
    else
        notok "$kind: $old answers through HAProxy"
    fi
}
# recover KIND REPAIR...: after REPAIR N, both proxies catch up alone
recover() {
    local kind=$1 px
    shift
    for px in 1 2; do
        "$@" $px || bail "cannot repair proxy $px's store"
    done
    # the renewal replaces the old line
    awk 'NR == FNR { new[$1] = $2; next } !($1 in new) { print }
         END { for (d in new) print d, new[d] }' \
        "$tmp/new" "$tmp/served" >"$tmp/served.next"
    mv "$tmp/served.next" "$tmp/served"
    for px in 1 2; do
        if wait_for 240 caught_up $px "$tmp/served"; then
            ok "$kind gone: proxy $px caught up alone (new domains and the renewal served, status clean)"
        else
            notok "$kind gone: proxy $px caught up alone"
            diag "$(status $px)"
        fi
        case $(agent $px) in
            ready) ok "$kind gone: proxy $px's agent-check says ready" ;;
            *) notok "$kind gone: proxy $px's agent-check says ready: $(agent $px)" ;;
        esac
    done
}

if [ "$ONLY" != state ]; then
    section "disk full"
    fault full "No space left on device" store_fill
    recover "disk full" store_free

    section "read-only store"
    fault ro "Read-only file system" store_break
    recover "read-only store" store_repair
fi

# --- A status page that must read state.json --------------------------------
# Only without a daemon in this httpd is there nothing in shared memory:
# an httpd with CertSyncStoreDir but no CertSyncServiceURL, its store's
# state.json each input of the fuzz corpus (truncated, wrong types,
# missing fields, NULs, not JSON).  Every page answers; no worker dies.
section "malformed state.json"
sdir=$tmp/statusonly
mkdir -p "$sdir/logs" "$sdir/store"
chmod 755 "$sdir" "$sdir/logs" "$sdir/store"
write_so() {
    so_port=$(pick_port)
    listen_ports=$so_port
    {
        common_conf "$sdir" 10
        load status_module mod_status.so mod_status.c
        echo "LoadModule certsync_module \"$POOL_TOP/mod_certsync/.libs/mod_certsync.so\""
        echo "CertSyncStoreDir \"$sdir/store\""
        echo "Listen 127.0.0.1:$so_port"
        echo "<Location /certsync-status>"
        echo "    SetHandler certsync-status"
        echo "</Location>"
        echo "<Location /server-status>"
        echo "    SetHandler server-status"
        echo "</Location>"
    } >"$sdir/httpd.conf"
}
HTTPD=$POOL_HTTPD
if start_httpd_retry "$sdir" write_so; then
    pages=0
    bad=()
    for f in "$top"/t/fuzz/corpus/state/*; do
        cp "$f" "$sdir/store/state.json" && chmod 644 "$sdir/store/state.json"
        for q in "certsync-status" "certsync-status?metrics" \
                 "certsync-status html" "server-status" "server-status?auto"; do
            hdr=()
            [ "${q#* }" = html ] && hdr=(-H 'Accept: text/html')
            code=$(curl -sS --noproxy '*' --max-time 5 -o /dev/null \
                   -w '%{http_code}' "${hdr[@]}" \
                   "http://127.0.0.1:$so_port/${q% html}" 2>/dev/null)
            pages=$((pages + 1))
            [ "$code" = 200 ] || bad+=("${f##*/} $q: $code")
        done
    done
    if [ ${#bad[@]} = 0 ] \
       && ! grep -q "exit signal\|Segmentation" "$sdir/logs/error_log"; then
        ok "malformed state.json: $pages pages over $(ls "$top"/t/fuzz/corpus/state | wc -l) inputs answer 200, no worker died"
    else
        notok "malformed state.json: every page answers, no worker dies"
        diag "${bad[*]}"
        diag "$(grep "exit signal\|Segmentation" "$sdir/logs/error_log" | head -5)"
    fi
    stop_httpd "$sdir"
else
    notok "an httpd with only the status page starts"
fi

echo "1..$n"
echo "$npass passed, $nfail failed"
[ "$nfail" = 0 ]
