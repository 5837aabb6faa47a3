# shellcheck shell=bash
# bench/lib/stats.sh: summary statistics of the numbers on stdin, one per
# line: median, quartiles, a bootstrap interval of the median.  Generic:
# no globals, nothing else needed but sort and awk; any bench script may
# source it.  Sourced by bench/proxy_protocol.sh (parts 2, 4 and 5).

# Median of the numbers on stdin (mean of the middle two for an even count).
median() {
    sort -g | awk '{ v[NR] = $1 }
        END { if (NR == 0) print "nan";
              else if (NR % 2) print v[(NR + 1) / 2];
              else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# "Q1 MEDIAN Q3" of the numbers on stdin (linear interpolation between
# the closest ranks, as R's default and numpy's percentile do).
quartiles() {
    sort -g | awk '{ v[NR] = $1 }
        function q(p,   h, i) {
            h = (NR - 1) * p + 1; i = int(h)
            return i >= NR ? v[NR] : v[i] + (h - i) * (v[i + 1] - v[i])
        }
        END { if (NR == 0) print "nan nan nan"
              else printf "%.4f %.4f %.4f\n", q(0.25), q(0.5), q(0.75) }'
}

# "LOW HIGH": the 2.5 and 97.5 percentiles of the median of 2,000
# bootstrap resamples of the numbers on stdin.
bootstrap_median() {
    awk 'function med(a, n,   i, j, t) {
             for (i = 2; i <= n; i++) {      # insertion sort: n is small
                 t = a[i]
                 for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]
                 a[j + 1] = t
             }
             return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
         }
         { v[++n] = $1 }
         END {
             if (n == 0) { print "nan nan"; exit }
             srand(1)
             for (b = 1; b <= 2000; b++) {
                 for (i = 1; i <= n; i++) s[i] = v[int(rand() * n) + 1]
                 m[b] = med(s, n)
             }
             med(m, 2000)
             print m[50], m[1951]
         }'
}
