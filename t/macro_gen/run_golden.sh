#!/bin/sh
# run_golden.sh: golden tests of mod_macro_gen, in the style of mod_macro's
# own: each case is a configuration (cases/NAME.conf) and a manifest
# (cases/NAME.manifest); "httpd -t -D DUMP_MACRO_GEN" and
# "httpd -t -D DUMP_VHOSTS" run on it, and their exit status, stdout and
# stderr, normalised, must equal cases/NAME.out.
#
#   t/macro_gen/run_golden.sh [--update] [NAME...]
#
# --update rewrites the .out files from this run (then read the diff).
#
# Environment: HTTPD, HTTPD_MODULES, MG_MODULE, APXS (see env.sh).
#
# Each run gets a fresh temporary directory holding the certificate store
# (dummy fullchain.pem/privkey.pem files), the manifests and the
# configurations; its path is written @T@ in the cases and the .out files.
#
# A case whose .conf contains "# golden: skip-as-root" is skipped when run
# as root; "# golden: setup CMD" runs CMD (with $T set) before the case.
#
# Prints one "ok"/"not ok" line per case, then "N passed, M failed"; exits
# non-zero if any case failed.

here=$(cd "$(dirname "$0")" && pwd)

update=0
if [ "${1:-}" = "--update" ]; then
    update=1
    shift
fi

. "$here/env.sh"

T=$(mktemp -d "${TMPDIR:-/tmp}/mg_golden.XXXXXX") || exit 2
trap 'chmod -R u+rwx "$T" 2>/dev/null; rm -rf "$T"' EXIT
trap 'exit 2' HUP INT TERM

# Templates: @T@, @MODULES@ and @MG_MODULE@ become real paths.
fill() {
    sed -e "s|@T@|$(sed_repl "$T")|g" \
        -e "s|@MODULES@|$(sed_repl "$HTTPD_MODULES")|g" \
        -e "s|@MG_MODULE@|$(sed_repl "$MG_MODULE")|g" "$1"
}

# Output that differs from run to run or system to system: the temporary
# directory, the time and pid of log lines, the binary's name.
normalise() {
    sed -e "s|$(sed_pat "$T")|@T@|g" \
        -e 's/^\[[^]]*\] \[\([^]]*\)\] \[pid [^]]*\] /[\1] /' \
        -e "s|^$(sed_pat "$(basename "$HTTPD")"): |httpd: |"
}

# The certificate store, laid out like mod_certsync's: live/DOMAIN/current
# is a symlink to the version directory.
version() {
    mkdir -p "$T/live/$1/v1" && ln -s v1 "$T/live/$1/current"
}
store() {
    for d in a.example.com b.example.com c.example.com '*.example.org' \
             nokey.example.com nocert.example.com emptykey.example.com \
             dirkey.example.com noperm.example.com; do
        version "$d" || exit 2
        echo "dummy certificate of $d" > "$T/live/$d/v1/fullchain.pem"
        echo "dummy key of $d" > "$T/live/$d/v1/privkey.pem"
    done
    rm "$T/live/nokey.example.com/v1/privkey.pem"
    rm "$T/live/nocert.example.com/v1/fullchain.pem"
    : > "$T/live/emptykey.example.com/v1/privkey.pem"
    rm "$T/live/dirkey.example.com/v1/privkey.pem"
    mkdir "$T/live/dirkey.example.com/v1/privkey.pem"
    chmod 000 "$T/live/noperm.example.com/v1/privkey.pem"
    mkdir -p "$T/logs"
    fill "$here/common.conf" > "$T/common.conf"
    for m in "$here"/cases/*.manifest; do
        fill "$m" > "$T/$(basename "$m")"
    done
}

# One httpd -t run, as it appears in the .out file.
run() {
    "$HTTPD" -t -f "$T/$1.conf" -D "$2" > "$T/stdout" 2> "$T/stderr"
    rc=$?
    echo "== httpd -t -D $2"
    echo "exit $rc"
    echo "-- stdout"
    cat "$T/stdout"
    echo "-- stderr"
    cat "$T/stderr"
}

store

if [ $# -eq 0 ]; then
    set -- $(cd "$here/cases" && ls *.conf | sed -e 's/\.conf$//')
fi

n=0
passed=0
failed=0
for name in "$@"; do
    n=$((n + 1))
    conf="$here/cases/$name.conf"
    if [ ! -f "$conf" ]; then
        echo "not ok $n - $name: no $conf"
        failed=$((failed + 1))
        continue
    fi
    if [ "$(id -u)" = 0 ] && grep -q '^# golden: skip-as-root' "$conf"; then
        echo "ok $n - $name # SKIP running as root"
        continue
    fi
    fill "$conf" > "$T/$name.conf"
    grep '^# golden: setup ' "$conf" | sed -e 's/^# golden: setup //' \
        > "$T/setup.sh"
    (export T; . "$T/setup.sh")
    { run "$name" DUMP_MACRO_GEN; run "$name" DUMP_VHOSTS; } | normalise \
        > "$T/$name.got"
    if [ $update = 1 ]; then
        cp "$T/$name.got" "$here/cases/$name.out"
    fi
    if diff -u "$here/cases/$name.out" "$T/$name.got" > "$T/diff" 2>&1; then
        echo "ok $n - $name"
        passed=$((passed + 1))
    else
        echo "not ok $n - $name"
        sed -e 's/^/# /' "$T/diff"
        failed=$((failed + 1))
    fi
done

echo "$passed passed, $failed failed"
[ $failed = 0 ]
