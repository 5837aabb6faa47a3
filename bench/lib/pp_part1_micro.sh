# shellcheck shell=bash
# bench/lib/pp_part1_micro.sh: part 1 of bench/proxy_protocol.sh, the
# parser micro-benchmark (bench/pp_parse_bench.c, built here): ns per
# header, then callgrind's instructions per header if valgrind is there.
#
# Expects from the caller: TOP, WORK, CC, ON_APACHE_CPUS.

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
