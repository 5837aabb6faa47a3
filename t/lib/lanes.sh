#!/bin/bash
# t/lib/lanes.sh: runs the end-to-end suites (make check-e2e) in two lanes
# at once, one make target after the other in each lane.  The suites pick
# free loopback ports and make their own directories, daemons and
# databases, so two of them share nothing but the CPU; most of their time
# is spent waiting on daemons.
#
#   lanes.sh MAKE 'TARGET...' 'TARGET...'
#
# Each suite's output goes to its own log; a line per suite says how it
# ended and how long it took.  After both lanes: the log of every suite
# that failed is printed whole, the logs are removed when all passed and
# kept (and named) when one failed.  E2E_SERIAL=1 runs the second lane
# after the first, with the output of each suite as it comes.
set -u

make_cmd=$1
lanes=("$2" "$3")

if [ -n "${E2E_SERIAL:-}" ]; then
    for t in ${lanes[0]} ${lanes[1]}; do
        $make_cmd -s "$t" || exit 1
    done
    exit 0
fi

logs=$(mktemp -d "${TMPDIR:-/tmp}/certsuite-e2e.XXXXXX") || exit 1

run_lane() { # N TARGET...: the targets in order; a line each
    local n=$1 t rc start summary
    shift
    for t in "$@"; do
        start=$SECONDS
        echo "== e2e lane $n: $t started"
        $make_cmd -s "$t" >"$logs/$t.log" 2>&1
        rc=$?
        # Every suite ends with its count: one cut short is a failure.
        summary=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$logs/$t.log" \
                  | tail -n 1)
        if [ $rc = 0 ] && [ -z "$summary" ] \
           && ! grep -qE '^(1\.\.0 # SKIP|SKIP:)' "$logs/$t.log"; then
            rc=99
        fi
        echo "$t $rc" >>"$logs/results"
        if [ $rc = 0 ]; then
            echo "== e2e lane $n: $t passed in $((SECONDS - start)) s" \
                 "(${summary:-skipped})"
        elif [ $rc = 99 ]; then
            echo "== e2e lane $n: $t FAILED: it ended without its" \
                 "'N passed, M failed' line"
        else
            echo "== e2e lane $n: $t FAILED (exit $rc) in" \
                 "$((SECONDS - start)) s"
        fi
    done
}

T0=$SECONDS
# shellcheck disable=SC2086
run_lane 1 ${lanes[0]} &
lane1=$!
# shellcheck disable=SC2086
run_lane 2 ${lanes[1]} &
lane2=$!
trap 'kill $lane1 $lane2 2>/dev/null; exit 130' INT TERM
wait $lane1 $lane2

failed=$(awk '$2 != 0 { print $1 }' "$logs/results" 2>/dev/null)
ran=$(wc -l <"$logs/results" 2>/dev/null || echo 0)
echo "== e2e: $ran suites in $((SECONDS - T0)) s"
if [ -z "$failed" ] && [ "$ran" = "$(echo ${lanes[0]} ${lanes[1]} | wc -w)" ]; then
    rm -rf "$logs"
    exit 0
fi
for t in $failed; do
    echo
    echo "==== $t: its log ($logs/$t.log)"
    cat "$logs/$t.log"
done
echo
echo "== e2e: failed: ${failed:-a lane stopped early}; logs kept in $logs"
exit 1
