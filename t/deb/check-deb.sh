#!/bin/bash
#
# t/deb/check-deb.sh (make check-deb): the Debian packages of the tree.
#
#   1. dpkg-buildpackage -us -uc -b on a copy of the tree (the files git
#      knows, as in a clean clone) builds the five packages
#   2. lintian reports no error on them
#   3. each module package ships its .so, a .load and a .conf with
#      commented defaults, and depends on apache2-api-*; certsuite ships
#      the command and its man page
#   4. they install on this machine (apt-get, dependencies resolved)
#   5. in a second Apache instance of Debian's layout (/etc/apache2-NAME,
#      README.multiple-instances), so the machine's own /etc/apache2 is
#      never changed: a2enmod enables the four modules and what their
#      .load files say they depend on (ssl, dbd, macro), apache2ctl
#      configtest passes with their .conf files, apache2ctl start serves a
#      request whose PROXY header mod_proxy_protocol reads, and the
#      certsuite command runs (version, usage error)
#   6. the packages are purged, the instance removed: the machine is as
#      before (checked)
#
# Root only (it installs packages); a normal user gets a skip.  Nearly
# all of its time is the build: about 2.5 minutes of CPU time; measured
# 1052 s in all (the build 876 s, lintian 87 s, install 41 s) on the
# 2-core machine at a load average of about 30 (eight sessions at once).
# Its work folder (the build, its log, lintian's output) is removed after
# a pass and named after a failure; CERTSUITE_KEEP=1 keeps it anyway.
# CHECK_DEB_DEBS=DIR checks packages built before instead of building.
set -u

top=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=../lib/certsuite.sh
. "$top/t/lib/certsuite.sh"

PKGS="libapache2-mod-proxy-protocol libapache2-mod-certsync
libapache2-mod-certservice libapache2-mod-macro-gen certsuite"
MODS="proxy_protocol certsync certservice macro_gen"
INST=certsuite-deb          # the Apache instance: /etc/apache2-$INST
CONFDIR=/etc/apache2-$INST

tap_init
if [ "$(id -u)" != 0 ]; then
    echo "1..0 # SKIP check-deb installs packages: run it as root"
    exit 0
fi
for p in dpkg-buildpackage lintian apt-get a2enmod apache2ctl git curl; do
    command -v "$p" >/dev/null \
        || { echo "1..0 # SKIP $p not found (build/install-deps.sh)"; exit 0; }
done
if [ -e "$CONFDIR" ]; then
    echo "Bail out! $CONFDIR exists (a run that was killed?): remove it first"
    exit 1
fi

installed_before=$(dpkg-query -W -f '${Package} ${Status}\n' $PKGS 2>/dev/null \
                   | grep -c ' installed$')
if [ "$installed_before" != 0 ]; then
    echo "Bail out! some of the packages are installed already: $PKGS"
    exit 1
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/certsuite-deb.XXXXXX") \
    || { echo "Bail out! mktemp failed"; exit 1; }
work=$tmp
we_installed=0
on_exit() {
    local rc=$?
    set +e
    trap - EXIT
    trap '' INT TERM HUP
    if [ -e "$CONFDIR" ]; then
        APACHE_CONFDIR=$CONFDIR apache2ctl stop >/dev/null 2>&1
        for ((i = 0; i < 50; i++)); do
            [ -e "/var/run/apache2-$INST/apache2.pid" ] || break
            sleep 0.1
        done
        rm -rf "$CONFDIR" "/var/log/apache2-$INST" "/var/run/apache2-$INST" \
            "/var/lock/apache2-$INST" "/var/cache/apache2-$INST"
    fi
    if [ "$we_installed" = 1 ]; then
        # shellcheck disable=SC2086
        flock /tmp/apt.lock dpkg --purge $PKGS >"$work/purge.log" 2>&1 \
            || { echo "# dpkg --purge failed:"; sed 's/^/# /' "$work/purge.log"; }
    fi
    if [ "$rc" = 0 ] && [ "$nfail" = 0 ] \
       && { [ -z "${CERTSUITE_KEEP:-}" ] || [ "$CERTSUITE_KEEP" = failed ]; }; then
        rm -rf "$work"
    else
        echo "# the work folder is kept: $work (build.log, lintian.log)"
    fi
    exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [ -n "${CHECK_DEB_DEBS:-}" ]; then
    # Packages built before (a directory with the .debs and the .changes):
    # for rerunning the checks after the build, not for CI.
    section "packages from $CHECK_DEB_DEBS (not built here)"
    cp "$CHECK_DEB_DEBS"/*.deb "$CHECK_DEB_DEBS"/*.changes \
        "$CHECK_DEB_DEBS"/*.buildinfo "$work/" 2>/dev/null
    ok "packages copied from $CHECK_DEB_DEBS"
else
section "build (dpkg-buildpackage -us -uc -b: the longest step)"
src=$work/certsuite-0.1.0
mkdir -p "$src"
# The files a clean clone has (and new ones not yet committed), nothing
# built.
(cd "$top" && git ls-files -co --exclude-standard -z \
    | tar --null -T - -cf -) | tar -C "$src" -xf - \
    || bail "cannot copy the tree"
t=$SECONDS
(cd "$src" && DEB_BUILD_OPTIONS="parallel=2 ${DEB_BUILD_OPTIONS:-}" \
    nice -n 10 dpkg-buildpackage -us -uc -b) >"$work/build.log" 2>&1 &
bpid=$!
# A line every 30 s while it builds, so a long step is seen to progress.
while kill -0 "$bpid" 2>/dev/null; do
    for ((i = 0; i < 30; i++)); do
        kill -0 "$bpid" 2>/dev/null || break
        sleep 1
    done
    kill -0 "$bpid" 2>/dev/null \
        && echo "# ... building, $((SECONDS - t)) s: at $(grep -oE '^ *(dh_[a-z0-9_]+|debian/rules [a-z0-9_]+)' "$work/build.log" | tail -n 1 | sed 's/^ *//'), $(grep -c '^libtool: compile' "$work/build.log") objects compiled"
done
wait "$bpid"
okif $? "dpkg-buildpackage -us -uc -b ($((SECONDS - t)) s)" \
    || { tail -n 30 "$work/build.log" | sed 's/^/# /'; bail "no packages"; }
fi
for p in $PKGS; do
    f=$(ls "$work"/${p}_*.deb 2>/dev/null | head -n 1)
    [ -n "$f" ]
    okif $? "package $p built" || continue
    eval "deb_${p//-/_}=\$f"
done
changes=$(ls "$work"/certsuite_*.changes 2>/dev/null | head -n 1)

section "lintian"
# (Its note that it runs as root goes to stderr, kept apart.)
lintian --fail-on error --tag-display-limit 0 "$changes" >"$work/lintian.log" \
    2>"$work/lintian.err"
lrc=$?
okif $lrc "lintian: no error" \
    || sed 's/^/# /' "$work/lintian.log" "$work/lintian.err"
tags=$(grep -E '^[EWIPX]: ' "$work/lintian.log")
if [ "$lrc" = 0 ] && [ -n "$tags" ]; then
    echo "# lintian's other tags (warnings, info):"
    sort <<<"$tags" | uniq -c | sed 's/^/#   /'
fi

section "contents"
for m in $MODS; do
    p=libapache2-mod-${m//_/-}
    f=$(ls "$work"/${p}_*.deb)
    list=$(dpkg-deb -c "$f")
    grep -q "\./usr/lib/apache2/modules/mod_$m.so$" <<<"$list" \
        && grep -q "\./etc/apache2/mods-available/$m.load$" <<<"$list" \
        && grep -q "\./etc/apache2/mods-available/$m.conf$" <<<"$list"
    okif $? "$p ships mod_$m.so, $m.load, $m.conf"
    dpkg-deb -f "$f" Depends | grep -q 'apache2-api-[0-9]'
    okif $? "$p depends on apache2-api-*: $(dpkg-deb -f "$f" Depends)"
    dpkg-deb --fsys-tarfile "$f" | tar -xO "./etc/apache2/mods-available/$m.conf" \
        >"$work/$m.conf"
    # Every directive line of the .conf is a commented default.
    [ -z "$(grep -vE '^\s*(#|$|</?IfModule)' "$work/$m.conf")" ]
    okif $? "... its .conf holds only commented defaults"
done
list=$(dpkg-deb -c "$work"/certsuite_*.deb)
grep -q '\./usr/bin/certsuite$' <<<"$list" \
    && grep -q '\./usr/share/man/man1/certsuite.1.gz$' <<<"$list"
okif $? "certsuite ships /usr/bin/certsuite and its man page"

section "install"
t=$SECONDS
# shellcheck disable=SC2046
flock /tmp/apt.lock env DEBIAN_FRONTEND=noninteractive apt-get install -y \
    --no-install-recommends $(for p in $PKGS; do ls "$work"/${p}_*.deb; done) \
    >"$work/install.log" 2>&1
irc=$?
we_installed=1
okif $irc "apt-get install of the five packages ($((SECONDS - t)) s)" \
    || { tail -n 20 "$work/install.log" | sed 's/^/# /'; bail "not installed"; }
enabled=
for m in $MODS; do
    for f in /etc/apache2/mods-enabled/"$m".*; do
        [ -e "$f" ] && enabled="$enabled $f"
    done
done
[ -z "$enabled" ]
okif $? "nothing enabled by installing (the operator runs a2enmod)" \
    || diag "enabled:$enabled"

section "a second Apache instance: a2enmod, configtest, a request"
cp -a /etc/apache2 "$CONFDIR" || bail "cannot copy /etc/apache2"
# What Debian's setup-instance script makes beside the configuration.
install -d -m 750 -o root -g adm "/var/log/apache2-$INST"
port=$(pick_port) || bail "no free port"
pp_port=$(pick_port) || bail "no free port"
while [ "$pp_port" = "$port" ]; do pp_port=$(pick_port); done
printf 'Listen 127.0.0.1:%s\nListen 127.0.0.1:%s\n' "$port" "$pp_port" \
    >"$CONFDIR/ports.conf"
rm -f "$CONFDIR"/sites-enabled/*
cat >"$CONFDIR/sites-available/certsuite-deb.conf" <<EOF
# check-deb: mod_proxy_protocol on one address, a plain one beside it
ServerName 127.0.0.1
<VirtualHost 127.0.0.1:$port>
    DocumentRoot $work/htdocs
</VirtualHost>
<VirtualHost 127.0.0.1:$pp_port>
    DocumentRoot $work/htdocs
    ProxyProtocol On
    ProxyProtocolTrustedProxies 127.0.0.1
    Header always set X-Client-Addr "%{PROXY_PROTOCOL_SRC_ADDR}e"
    CustomLog $work/pp_access.log "%a %{PROXY_PROTOCOL_PEER_ADDR}e"
</VirtualHost>
<Directory $work/htdocs>
    Require all granted
</Directory>
EOF
mkdir -p "$work/htdocs"
chmod 755 "$work" "$work/htdocs"
echo "certsuite-deb page" >"$work/htdocs/index.html"
chmod 644 "$work/htdocs/index.html"
export APACHE_CONFDIR=$CONFDIR
a2enmod -q $MODS headers >"$work/a2enmod.log" 2>&1
okif $? "a2enmod $MODS" || sed 's/^/# /' "$work/a2enmod.log"
all=1
for m in $MODS ssl dbd macro headers; do
    [ -e "$CONFDIR/mods-enabled/$m.load" ] || { all=0; diag "$m not enabled"; }
done
is "$all" 1 "... and what their .load files depend on (ssl, dbd, macro)"
a2ensite -q certsuite-deb >/dev/null 2>&1
okif $? "a2ensite of the test's site"
out=$(apache2ctl configtest 2>&1)
okif $? "apache2ctl configtest" || diag "$out"
grep -q '^Syntax OK$' <<<"$out"
okif $? "... Syntax OK"
out=$(apache2ctl start 2>&1)
okif $? "apache2ctl start" || diag "$out"
wait_port "$pp_port" 10
okif $? "... listening"
is "$(curl -sS --noproxy '*' --max-time 5 "http://127.0.0.1:$port/")" \
   "certsuite-deb page" "a request"
# A PROXY v1 header from the trusted 127.0.0.1, then the request.
hdrs=$(exec 3<>"/dev/tcp/127.0.0.1/$pp_port" 2>/dev/null || exit 1
       printf 'PROXY TCP4 192.0.2.7 127.0.0.1 40000 %s\r\nGET / HTTP/1.0\r\nHost: x\r\n\r\n' \
           "$pp_port" >&3
       timeout 5 cat <&3 | tr -d '\r')
grep -qi '^X-Client-Addr: 192.0.2.7' <<<"$hdrs"
okif $? "a request through mod_proxy_protocol: PROXY_PROTOCOL_SRC_ADDR" \
    || diag "$hdrs"
curl -sS --noproxy '*' --max-time 5 -o /dev/null "http://127.0.0.1:$pp_port/" \
    2>/dev/null
crc=$?
# 52 or 56: the connection was accepted, then closed with no answer.
[ "$crc" = 52 ] || [ "$crc" = 56 ]
okif $? "... and no answer without the header (curl's exit $crc)"
err=$(grep -E '\[(emerg|alert|crit|error)\]' "/var/log/apache2-$INST/error.log" 2>/dev/null \
      | grep -v 'PP000')
[ -f "/var/log/apache2-$INST/error.log" ] && [ -z "$err" ]
okif $? "no error in the instance's error log but the refused header" \
    || diag "$err"
apache2ctl stop >/dev/null 2>&1
okif $? "apache2ctl stop"
# The connection's client address (%a) is the header's, its peer the
# trusted 127.0.0.1.
is "$(head -n 1 "$work/pp_access.log" 2>/dev/null)" "192.0.2.7 127.0.0.1" \
   "the access log's client address (%a) is the PROXY header's"
unset APACHE_CONFDIR
v=$(certsuite version 2>&1)
is "$v" "certsuite 0.1.0" "certsuite version"
certsuite domain frob >/dev/null 2>&1
is "$?" 2 "certsuite: a usage error exits 2"
if command -v man >/dev/null; then
    man -w certsuite >/dev/null 2>&1
    okif $? "man certsuite finds the page"
fi

section "purge"
for ((i = 0; i < 50; i++)); do
    [ -e "/var/run/apache2-$INST/apache2.pid" ] || break
    sleep 0.1
done
rm -rf "$CONFDIR" "/var/log/apache2-$INST" "/var/run/apache2-$INST" \
    "/var/lock/apache2-$INST" "/var/cache/apache2-$INST"
# shellcheck disable=SC2086
flock /tmp/apt.lock dpkg --purge $PKGS >"$work/purge.log" 2>&1
okif $? "dpkg --purge" || sed 's/^/# /' "$work/purge.log"
we_installed=0
left=$(dpkg-query -W -f '${Package} ${Status}\n' $PKGS 2>/dev/null \
       | grep -v 'not-installed$')
[ -z "$left" ] && [ ! -e /usr/lib/apache2/modules/mod_certsync.so ] \
    && [ ! -e /etc/apache2/mods-available/certsync.load ] \
    && [ ! -e /usr/bin/certsuite ]
okif $? "nothing left installed" || diag "$left"

echo "1..$n"
echo "# $((SECONDS - T0)) s"
echo "$npass passed, $nfail failed"
[ "$nfail" = 0 ]
