#!/bin/bash
#
# bench/scale_plot.sh PLOT.DAT SYNC.DAT OUT.png: the plot of
# docs/benchmarks.md's bench/scale.sh section, from the data bench/scale.sh
# keeps in SCALE_SAVE (/tmp/scale-results): plot.dat, one line per size
# and mode ("size mode cold_start_s worker_rss_mb p99_one p99_hot
# p99_random activation_s rate_one rate_hot rate_random") and sync.dat
# ("size cold_sync_s"; may be empty).  Needs gnuplot (gnuplot-nox).
set -eu
dat=${1:?usage: bench/scale_plot.sh PLOT.DAT SYNC.DAT OUT.png}
sync=${2:?usage}
out=${3:?usage}
command -v gnuplot >/dev/null || { echo "scale_plot.sh: no gnuplot" >&2; exit 1; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/scale-plot.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
grep ' vhost ' "$dat" >"$tmp/vhost" || true
grep ' dynamic ' "$dat" >"$tmp/dynamic" || true
awk 'NF >= 2 && $2 > 0' "$sync" >"$tmp/sync" 2>/dev/null || true
# an empty series would stop gnuplot: plot only those with data
series() { # file using title style
    [ -s "$1" ] && printf '"%s" using %s title "%s" %s, ' "$1" "$2" "$3" "$4"
    return 0
}
p1=$(series "$tmp/vhost" 1:3 "vhost: cold start" "lw 2"; series "$tmp/dynamic" 1:3 "dynamic: cold start" "lw 2"; series "$tmp/sync" 1:2 "dynamic: cold sync from CertService" "lw 2 dt 2")
p2=$(series "$tmp/vhost" 1:4 "vhost" "lw 2"; series "$tmp/dynamic" 1:4 "dynamic" "lw 2")
p3=$(series "$tmp/vhost" 1:9 "vhost, 1 domain" "lw 1 dt 3"; series "$tmp/vhost" 1:11 "vhost, random" "lw 2"; series "$tmp/dynamic" 1:9 "dynamic, 1 domain" "lw 1 dt 3"; series "$tmp/dynamic" 1:10 "dynamic, hot" "lw 1 dt 2"; series "$tmp/dynamic" 1:11 "dynamic, random" "lw 2")
p4=$(series "$tmp/vhost" 1:7 "vhost, random" "lw 2"; series "$tmp/dynamic" 1:5 "dynamic, 1 domain" "lw 1 dt 3"; series "$tmp/dynamic" 1:7 "dynamic, random" "lw 2")
gnuplot <<GP
set terminal pngcairo size 1600,440 font ",10" noenhanced
set output "$out"
set multiplot layout 1,4 title "vhost vs dynamic activation (bench/scale.sh; 2 shared vCPUs: compare within a panel)"
set logscale x
set xlabel "domains"
set key top left
set style data linespoints
set key bottom right
set title "time to serve every domain (s)"
set logscale y
plot ${p1%, }
unset logscale y
set key top left
set title "largest worker RSS (MB)"
plot ${p2%, }
set title "full handshakes/s (4 client threads)"
set yrange [0:*]
plot ${p3%, }
set title "handshake p99 (ms)"
plot ${p4%, }
unset multiplot
GP
