# env.sh: sourced by run_golden.sh and scale.sh to find httpd, its modules
# (t/lib/certsuite.sh's cs_find_httpd, cs_find_moddir) and the
# mod_macro_gen.so under test; $here must be this directory.
#
#   MG_MODULE      mod_macro_gen.so (default: the build tree's
#                  mod_macro_gen/.libs/mod_macro_gen.so)
#   APXS           apxs of the target httpd (default: apxs in PATH), used
#                  to find the two below
#   HTTPD          the httpd binary (default: apxs' SBINDIR/TARGET, else
#                  apache2 or httpd in PATH)
#   HTTPD_MODULES  httpd's module directory (default: apxs' LIBEXECDIR,
#                  else the usual places: the first with mod_ssl.so)

top=$(cd "$here/../.." && pwd)
# shellcheck source=../lib/certsuite.sh
. "$top/t/lib/certsuite.sh"

cs_find_httpd || HTTPD=${HTTPD:-/usr/sbin/apache2}
if [ -z "${HTTPD_MODULES:-}" ]; then
    cs_find_moddir || moddir=/usr/lib/apache2/modules
    HTTPD_MODULES=$moddir
fi
MG_MODULE=${MG_MODULE:-$top/mod_macro_gen/.libs/mod_macro_gen.so}

for f in "$HTTPD" "$HTTPD_MODULES/mod_macro.so" "$MG_MODULE"; do
    if [ ! -e "$f" ]; then
        echo "$(basename "$0"): $f not found (set HTTPD, HTTPD_MODULES," \
             "MG_MODULE or APXS: see t/macro_gen/env.sh)" >&2
        exit 2
    fi
done

# Escape a string for the replacement side of sed's s|...|...|.
sed_repl() {
    printf '%s\n' "$1" | sed -e 's/[\\|&]/\\&/g'
}
# ... and for the pattern side.
sed_pat() {
    printf '%s\n' "$1" | sed -e 's/[]\\|&.*^$[]/\\&/g'
}
