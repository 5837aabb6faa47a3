# shellcheck shell=bash
# bench/lib/pp_part5_pathtime.sh: part 5 of bench/proxy_protocol.sh
# (PATHTIME=1), the time of a connection's path through Apache, measured
# inside it by bench/mod_pp_path_timing.c (built by build_perconn_tools,
# loaded by write_apache_conf; each instance appends to
# $WORK/pathtime.V).  Entry point: path_timing.
#
# Expects from the caller: PATHTIME_ROUNDS, PATHTIME_CONNECTIONS,
# PROXY_VERSION, WORK, LABEL, die; running servers and children_cpu_ns
# (pp_servers.sh); perconn_ab, perconn_sender (pp_part4_perconn.sh);
# median (stats.sh).

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
