# env.sh: sourced by run_golden.sh and scale.sh to find httpd, its modules
# and the mod_macro_gen.so under test; $here must be this directory.
#
#   MG_MODULE      mod_macro_gen.so (default: the build tree's
#                  mod_macro_gen/.libs/mod_macro_gen.so)
#   APXS           apxs of the target httpd (default: apxs in PATH), used
#                  to find the two below
#   HTTPD          the httpd binary (default: apxs' SBINDIR/TARGET, else
#                  apache2 or httpd in PATH)
#   HTTPD_MODULES  httpd's module directory (default: apxs' LIBEXECDIR)

top=$(cd "$here/../.." && pwd)

APXS=${APXS:-$(command -v apxs 2>/dev/null || true)}
if [ -z "${HTTPD:-}" ]; then
    if [ -n "$APXS" ]; then
        HTTPD="$("$APXS" -q SBINDIR)/$("$APXS" -q TARGET)"
    fi
    if [ -z "${HTTPD:-}" ] || [ ! -x "$HTTPD" ]; then
        HTTPD=$(command -v apache2 || command -v httpd \
                || echo /usr/sbin/apache2)
    fi
fi
if [ -z "${HTTPD_MODULES:-}" ] && [ -n "$APXS" ]; then
    HTTPD_MODULES=$("$APXS" -q LIBEXECDIR)
fi
HTTPD_MODULES=${HTTPD_MODULES:-/usr/lib/apache2/modules}
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
