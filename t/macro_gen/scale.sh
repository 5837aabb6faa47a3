#!/bin/sh
# scale.sh: how long "httpd -t" takes on a configuration whose virtual hosts
# come from MacroGenerate, for manifests of 10,000 and 100,000 entries.
# A measurement, not a timed test: it prints the figures, and fails only if
# a configuration does not load or does not expand to every entry.
#
#   t/macro_gen/scale.sh [ENTRIES...]        (default: 10000 100000)
#
# Environment: HTTPD, HTTPD_MODULES, MG_MODULE, APXS (see env.sh).
#
# Each size is run three ways:
#   plain      MacroGenerate, a virtual host with ServerName and
#              DocumentRoot per entry (core directives only)
#   plain-Use  the same virtual hosts from the same Use lines written out
#              in a file: plain mod_macro, to show MacroGenerate's own cost
#              (reading the manifest, checking 2 files per entry)
#   tls        MacroGenerate with ARCHITECTURE.md's macro: SSLEngine,
#              SSLCertificateFile and SSLCertificateKeyFile per entry
#              (mod_ssl checks each file at configuration time too)
# Every entry points to one shared certdir holding dummy files, which is
# enough for "httpd -t" (it does not load certificates).

here=$(cd "$(dirname "$0")" && pwd)
. "$here/env.sh"

if [ $# -eq 0 ]; then
    set -- 10000 100000
fi

T=$(mktemp -d "${TMPDIR:-/tmp}/mg_scale.XXXXXX") || exit 2
trap 'rm -rf "$T"' EXIT
trap 'exit 2' HUP INT TERM

mkdir -p "$T/logs" "$T/certs"
echo "dummy certificate" > "$T/certs/fullchain.pem"
echo "dummy key" > "$T/certs/privkey.pem"

# GNU time gives the peak memory; without it that column says "-".
timer=
if /usr/bin/time -f %M true > /dev/null 2>&1; then
    timer="/usr/bin/time -o $T/rss -f %M"
fi

now() {
    date +%s.%N
}

# conf NAME MACRO-BODY GENERATE-LINE
conf() {
    cat > "$T/$1.conf" <<EOF
ServerRoot "$T"
ServerName scale.test
ErrorLog "$T/logs/error.log"
<IfModule !mpm_event_module>
    <IfModule !mpm_worker_module>
        <IfModule !mpm_prefork_module>
            LoadModule mpm_event_module "$HTTPD_MODULES/mod_mpm_event.so"
        </IfModule>
    </IfModule>
</IfModule>
$([ "$1" = tls ] && echo "LoadModule ssl_module \"$HTTPD_MODULES/mod_ssl.so\"")
LoadModule macro_module "$HTTPD_MODULES/mod_macro.so"
LoadModule macro_gen_module "$MG_MODULE"
Listen 127.0.0.1:8443

<Macro Host \$domain \$certdir>
    <VirtualHost *:8443>
        ServerName \$domain
$2
    </VirtualHost>
</Macro>

$3
EOF
}

conf plain '        DocumentRoot "$certdir"' \
     "MacroGenerate Host \"$T/manifest\""
conf plain-Use '        DocumentRoot "$certdir"' "Include \"$T/uses.conf\""
conf tls '        SSLEngine on
        SSLCertificateFile    $certdir/fullchain.pem
        SSLCertificateKeyFile $certdir/privkey.pem' \
     "MacroGenerate Host \"$T/manifest\""

echo "# $("$HTTPD" -v | sed -n -e 's/^Server version: //p'), $HTTPD"
echo "# every run: httpd -t; seconds are wall-clock time"
printf '%8s  %-10s %8s %10s %9s\n' entries config seconds entries/s \
       "max RSS"

failed=0
for n in "$@"; do
    {
        echo "# certsync manifest v1"
        awk -v n="$n" -v dir="$T/certs" \
            'BEGIN { for (i = 1; i <= n; i++)
                         printf "d%d.example.com %s\n", i, dir }'
    } > "$T/manifest"
    awk -v dir="$T/certs" 'NR > 1 { print "Use Host " $1 " " dir }' \
        "$T/manifest" > "$T/uses.conf"

    for c in plain plain-Use tls; do
        if [ $c = tls ] && [ ! -e "$HTTPD_MODULES/mod_ssl.so" ]; then
            continue
        fi
        start=$(now)
        $timer "$HTTPD" -t -e info -f "$T/$c.conf" > "$T/out" 2>&1
        rc=$?
        end=$(now)
        # The configuration loaded, with every entry (MG00004, at level
        # info, counts them).
        if [ $rc != 0 ] || ! grep -q '^Syntax OK' "$T/out" \
           || { [ $c != plain-Use ] \
                && ! grep -q "MG00004: .*: $n entries, 0 skipped" "$T/out"; }
        then
            echo "not ok: $n entries, $c: httpd -t exited $rc:"
            sed -e 's/^/# /' "$T/out" | tail -n 20
            failed=$((failed + 1))
            continue
        fi
        rss=-
        if [ -n "$timer" ]; then
            rss="$(($(tail -n 1 "$T/rss") / 1024)) MB"
        fi
        awk -v n="$n" -v c="$c" -v s="$start" -v e="$end" -v rss="$rss" \
            'BEGIN { t = e - s;
                     printf "%8d  %-10s %8.2f %10.0f %9s\n",
                            n, c, t, n / t, rss }'
    done
done

[ $failed = 0 ]
