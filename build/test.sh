#!/bin/bash
# The whole test suite, from a fresh Debian machine or a developer's tree:
#   as root:  installs the dependencies, then builds and runs everything as
#             an unprivileged user on a copy of the tree (Apache-Test
#             refuses to run as root), then, as root on that copy, the one
#             suite that mounts filesystems (make check-certsync-store);
#   as a user: builds and runs everything in place (dependencies must be
#             installed: sudo build/install-deps.sh); the store-faults
#             suite skips itself.
# Steps: build with -Werror; make check (C unit tests, fuzz-corpus replay,
# golden configuration tests, source checks, Apache-Test); make check-e2e
# (the end-to-end suites with real daemons: MariaDB, sync with its
# faults, rollout, dynamic, ACME, the demo's cleanup); then the unit tests and fuzz replay again under
# AddressSanitizer + UndefinedBehaviorSanitizer.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
TEST_USER=${CERTSUITE_TEST_USER:-certsuite-test}

# Files of the tree worth copying: tracked and untracked-but-not-ignored.
tree_files() {
    if git -C "$top" rev-parse --git-dir >/dev/null 2>&1; then
        git -C "$top" ls-files -co --exclude-standard -z
    else
        (cd "$top" && find . -path ./.git -prune -o -type f -print0)
    fi
}

copy_tree() {
    local dest=$1
    mkdir -p "$dest"
    (cd "$top" && tree_files | tar --null -T - -cf -) | tar -C "$dest" -xf -
}

if [ "$(id -u)" = 0 ]; then
    "$top/build/install-deps.sh"
    if ! id -u "$TEST_USER" >/dev/null 2>&1; then
        useradd --create-home --shell /bin/bash "$TEST_USER"
    fi
    # t/acme/dns01.sh's secondary name server listens on 127.0.0.2, and
    # named listens only on an interface's addresses: on lo for the run
    # (127.0.0.0/8 is routed to lo anyway), removed after.
    added_lo=
    if ! ip -4 addr show dev lo | grep -q 'inet 127\.0\.0\.2/'; then
        ip addr add 127.0.0.2/32 dev lo && added_lo=1
    fi
    work=$(mktemp -d /tmp/certsuite-test.XXXXXX)
    # Each suite's own folder likewise: kept and named ("# kept DIR")
    # only when it failed (CERTSUITE_KEEP=failed, t/lib/certsuite.sh).
    # The copy ends up holding keys (Apache-Test's t/certservice/pki, and
    # whatever a suite cut short leaves): removed on every way out, or
    # kept and named with CERTSUITE_KEEP (as each suite's own directory).
    # shellcheck disable=SC2154
    # After a pass it is removed; after a failure it is kept, and named,
    # for the logs (CERTSUITE_KEEP=1 keeps it after a pass too).
    trap 'rc=$?; trap - EXIT; trap "" INT TERM HUP
          [ -z "$added_lo" ] || ip addr del 127.0.0.2/32 dev lo
          if [ "$rc" != 0 ]; then
              echo "== FAILED (exit $rc): the work folder is kept for its" \
                   "logs: $work (it holds test keys: rm -rf $work)"
          elif [ -n "${CERTSUITE_KEEP:-}" ]; then echo "== kept $work"
          else rm -rf "$work"; fi; exit $rc' EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    trap 'exit 129' HUP
    copy_tree "$work/src"
    chown -R "$TEST_USER:" "$work"
    chmod 755 "$work"
    echo "== running the suite as $TEST_USER in $work/src"
    runuser -u "$TEST_USER" -- env -i PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin \
        HOME="$(getent passwd "$TEST_USER" | cut -d: -f6)" LANG=C.UTF-8 \
        ${CI:+CI="$CI"} CERTSUITE_KEEP="${CERTSUITE_KEEP:-failed}" \
        bash "$work/src/build/test.sh"
    # The suites that need root (they skip themselves as the test user),
    # on the tree the test user just built.  The Debian packages (built
    # from this tree's files, installed, enabled in a second Apache
    # instance, requested, purged) are mostly a build: in the background
    # meanwhile, their output shown at the end.
    echo
    echo "== as root: make check-deb in the background (build the packages," \
         "lintian, install, a2enmod, configtest, a request, purge)"
    "$top/t/deb/check-deb.sh" >"$work/check-deb.log" 2>&1 &
    deb_pid=$!
    # A proxy's store on loop-mounted ext4 made full and read-only.
    echo "== as root: make check-certsync-store (a full and a read-only store)"
    make -C "$work/src" -s check-certsync-store
    # The dashboard in headless Chromium (a policy file in /etc gives it
    # the admin's client certificate).
    echo "== as root: make check-dashboard (headless Chromium)"
    make -C "$work/src" -s check-dashboard
    echo "== as root: check-deb's output"
    deb_rc=0
    wait "$deb_pid" || deb_rc=$?
    cat "$work/check-deb.log"
    [ "$deb_rc" = 0 ] || exit "$deb_rc"
    echo "suites as root: 3 passed"
    exit 0
fi

for cmd in autoreconf apxs perl haproxy curl; do
    if ! PATH=$PATH:/usr/sbin command -v "$cmd" >/dev/null 2>&1; then
        echo "test.sh: '$cmd' is missing: run 'sudo build/install-deps.sh'" >&2
        exit 1
    fi
done

passed=0
step() {
    echo
    echo "== $*"
}
# quietly LOG CMD...: CMD with its output in LOG, a line every 30 s while
# it runs (a long step is seen to progress), the end of LOG if it fails.
quietly() {
    local log=$1 pid rc=0 t=$SECONDS i
    shift
    "$@" >"$log" 2>&1 &
    pid=$!
    while kill -0 "$pid" 2>/dev/null; do
        for ((i = 0; i < 30; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 1
        done
        if kill -0 "$pid" 2>/dev/null; then
            echo "   ... $((SECONDS - t)) s"
        fi
    done
    wait "$pid" || rc=$?
    if [ "$rc" != 0 ]; then
        tail -n 40 "$log"
        echo "test.sh: '$*' failed (exit $rc); its whole output: $log" >&2
        return "$rc"
    fi
    echo "   done in $((SECONDS - t)) s"
    rm -f "$log"
}
logs=$(mktemp -d "${TMPDIR:-/tmp}/certsuite-build-logs.XXXXXX")
# A step's log stays only when the step failed (quietly): named then.
trap 'rc=$?; trap - EXIT
      rmdir "$logs" 2>/dev/null || echo "== FAILED: the logs are kept in $logs"
      exit $rc' EXIT

cd "$top"
step "build (-Werror; about 3 minutes on 2 cores)"
quietly "$logs/autogen.log" ./autogen.sh
quietly "$logs/configure.log" ./configure --enable-werror
quietly "$logs/make.log" make -j2
passed=$((passed + 1))

step "make check: unit tests, fuzz-corpus replay, golden and source checks, Apache-Test"
# VERBOSE: a failing test's log is printed, not only named.
make check VERBOSE=yes
passed=$((passed + 1))

step "make check-e2e: MariaDB, sync (a stepped clock, a misbehaving CertService, a full or read-only store), rollout, dynamic and ACME end to end"
make check-e2e
passed=$((passed + 1))

step "unit tests and fuzz replay under AddressSanitizer + UBSan"
san=$(mktemp -d "${TMPDIR:-/tmp}/certsuite-asan.XXXXXX")
# Removed after a pass, kept and named after a failure.
trap 'rc=$?; trap - EXIT
      if [ "$rc" = 0 ]; then rm -rf "$san"; rmdir "$logs" 2>/dev/null
      else echo "== FAILED: kept $san (the sanitizer build)"
           rmdir "$logs" 2>/dev/null || echo "== and the logs: $logs"; fi
      exit $rc' EXIT
copy_tree "$san"
(
    cd "$san"
    quietly "$logs/asan-autogen.log" ./autogen.sh
    quietly "$logs/asan-configure.log" \
        ./configure --enable-werror --enable-sanitizers
    echo "   building with the sanitizers (about 3 minutes) and running"
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
        make -j2 check-unit VERBOSE=yes
)
passed=$((passed + 1))

echo
echo "suites: $passed passed, 0 failed"
