#!/usr/bin/env bash
# keygate's installation and Debian package, checked from a build tree:
#   check_package.sh BUILD_DIR SOURCE_DIR
# 1. cmake --install to a DESTDIR puts the binary, the unit, keygate.ini and
#    the docs in their FHS places and keeps an edited keygate.ini;
# 2. systemd-analyze verify accepts the unit of config/ and the installed
#    one (with ExecStart pointed at the staged binary);
# 3. cpack builds a .deb whose control data, contents and conffiles are
#    right, whose binary runs, and whose maintainer scripts create the
#    keygate user and /var/lib/keygate but start and enable nothing (run
#    against stub commands that record what they are asked).
set -euo pipefail

build=$1
src=$2
tmp=$(mktemp -d "${TMPDIR:-/tmp}/kg-package.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
failures=0
checks=0

ok() { checks=$((checks + 1)); }
fail() {
  checks=$((checks + 1))
  failures=$((failures + 1))
  echo "FAIL: $*" >&2
}
expect() { # expect DESCRIPTION COMMAND...
  local what=$1
  shift
  if "$@"; then ok; else fail "$what"; fi
}
mode_of() { stat -c '%a' "$1"; }

# ---- 1. cmake --install ----------------------------------------------------
inst=$tmp/inst
DESTDIR=$inst cmake --install "$build" --prefix /usr >"$tmp/install.log"
expect "binary installed 0755" test "$(mode_of "$inst/usr/bin/keygate")" = 755
unit=$inst/usr/lib/systemd/system/keygate.service
expect "unit installed" test -f "$unit"
expect "unit names the installed binary" \
  grep -qx 'ExecStart=/usr/bin/keygate --config /etc/keygate/keygate.ini serve' "$unit"
expect "keygate.ini installed 0640" test "$(mode_of "$inst/etc/keygate/keygate.ini")" = 640
expect "keygate.ini is the example" \
  cmp -s "$src/config/keygate.ini.example" "$inst/etc/keygate/keygate.ini"
for f in examples/keygate.ini.example examples/keygate.service operations.md \
  configuration.md cli.md store.md README.md copyright images/dashboard-keys.png; do
  expect "doc $f installed" test -f "$inst/usr/share/doc/keygate/$f"
done
echo "; edited by the operator" >>"$inst/etc/keygate/keygate.ini"
DESTDIR=$inst cmake --install "$build" --prefix /usr >"$tmp/install2.log"
expect "a second install keeps an edited keygate.ini" \
  grep -q '^; edited by the operator$' "$inst/etc/keygate/keygate.ini"
expect "a second install says so" grep -q 'Kept: .*/etc/keygate/keygate.ini' "$tmp/install2.log"

# ---- 2. systemd-analyze verify --------------------------------------------
# verify needs ExecStart's binary to exist: a copy of each unit names the
# staged one. Any message (an unknown key, a bad value) counts as failure.
verify_unit() { # verify_unit UNIT_FILE NAME
  local dir=$tmp/verify-$2
  mkdir -p "$dir"
  sed "s#/usr/bin/keygate#$inst/usr/bin/keygate#g" "$1" >"$dir/keygate.service"
  if ! systemd-analyze verify "$dir/keygate.service" >"$dir/out" 2>&1; then
    fail "systemd-analyze verify $2: $(cat "$dir/out")"
  elif [ -s "$dir/out" ]; then
    fail "systemd-analyze verify $2 printed: $(cat "$dir/out")"
  else
    ok
  fi
}
verify_unit "$src/config/keygate.service" source
verify_unit "$unit" installed
expect "unit is Type=notify with a watchdog" \
  grep -qx 'Type=notify' "$unit"
expect "unit has WatchdogSec" grep -q '^WatchdogSec=' "$unit"
expect "unit runs as keygate" grep -qx 'User=keygate' "$unit"

# ---- 3. the Debian package ------------------------------------------------
cpack -G DEB -B "$tmp/pkg" --config "$build/CPackConfig.cmake" >"$tmp/cpack.log" 2>&1 ||
  { cat "$tmp/cpack.log" >&2; fail "cpack"; exit 1; }
deb=$(ls "$tmp"/pkg/keygate_*.deb)
dpkg-deb -f "$deb" >"$tmp/control"
expect "Package: keygate" grep -qx 'Package: keygate' "$tmp/control"
depends=$(sed -n 's/^Depends: //p' "$tmp/control")
for lib in adduser libc6 libcurl4 libinih1 libjansson4 libmicrohttpd12 \
  libpq5 libsodium23 libsqlite3-0 libsystemd0 zlib1g; do
  if grep -Eq "(^|, )$lib( |,|$)" <<<"$depends"; then ok; else
    fail "Depends lacks $lib: $depends"
  fi
done
dpkg-deb -c "$deb" | awk '{print $1, $2, $6}' >"$tmp/contents"
has() { grep -qxF -- "$1" "$tmp/contents"; }
expect "binary in the package" has "-rwxr-xr-x root/root ./usr/bin/keygate"
expect "unit in the package" has "-rw-r--r-- root/root ./usr/lib/systemd/system/keygate.service"
expect "keygate.ini in the package" has "-rw-r----- root/root ./etc/keygate/keygate.ini"
expect "operations.md in the package" has "-rw-r--r-- root/root ./usr/share/doc/keygate/operations.md"
expect "copyright in the package" has "-rw-r--r-- root/root ./usr/share/doc/keygate/copyright"
if grep -Eq ' \./(usr/local|var|run|srv|home|tmp)/' "$tmp/contents"; then
  fail "the package ships files outside its FHS places: $(grep -E ' \./(usr/local|var|run|srv|home|tmp)/' "$tmp/contents")"
else ok; fi
mkdir -p "$tmp/ctrl" "$tmp/x"
dpkg-deb -e "$deb" "$tmp/ctrl"
dpkg-deb -x "$deb" "$tmp/x"
expect "conffiles is keygate.ini" test "$(cat "$tmp/ctrl/conffiles")" = /etc/keygate/keygate.ini
expect "the packaged binary runs" sh -c "\"$tmp/x/usr/bin/keygate\" version >/dev/null"
expect "the packaged unit names /usr/bin/keygate" \
  grep -qx 'ExecStart=/usr/bin/keygate --config /etc/keygate/keygate.ini serve' \
  "$tmp/x/usr/lib/systemd/system/keygate.service"

# Nothing in the maintainer scripts starts, enables or restarts a service.
for s in postinst prerm postrm; do
  if grep -Eq 'systemctl[^#]*(start|enable|restart|reload-or)|invoke-rc\.d|deb-systemd' "$tmp/ctrl/$s"; then
    fail "$s starts or enables something: $(grep -En 'start|enable|invoke-rc|deb-systemd' "$tmp/ctrl/$s")"
  else ok; fi
done

# The postinst, run for real against stubs of the commands it may call,
# each recording its arguments. First a new installation, then an upgrade
# on a machine where the user exists.
stubs=$tmp/stubs
mkdir -p "$stubs"
for c in adduser addgroup install chgrp chmod systemctl getent \
  invoke-rc.d deb-systemd-invoke deb-systemd-helper service; do
  cat >"$stubs/$c" <<STUB
#!/bin/sh
echo "$c \$*" >>"$tmp/calls"
[ "$c" != getent ] || [ -n "\${KG_STUB_USER_EXISTS:-}" ]
STUB
  chmod 0755 "$stubs/$c"
done
: >"$tmp/calls"
expect "postinst configure succeeds" env PATH="$stubs:/usr/bin:/bin" sh "$tmp/ctrl/postinst" configure ""
expect "postinst creates the keygate group" grep -q '^addgroup --system --quiet keygate$' "$tmp/calls"
expect "postinst creates the keygate system user" \
  grep -q '^adduser --system .*--home /var/lib/keygate .*keygate$' "$tmp/calls"
if [ -d /var/lib/keygate ]; then ok; else
  expect "postinst makes /var/lib/keygate 0700" \
    grep -qx 'install -d -m 0700 -o keygate -g keygate /var/lib/keygate' "$tmp/calls"
fi
if grep -Ev '^(getent|addgroup|adduser|install|chgrp|chmod) |^systemctl --system daemon-reload$' "$tmp/calls"; then
  fail "postinst called something else (above)"
else ok; fi
: >"$tmp/calls"
expect "postinst upgrade succeeds" env KG_STUB_USER_EXISTS=1 PATH="$stubs:/usr/bin:/bin" \
  sh "$tmp/ctrl/postinst" configure 0.0.9
if grep -Eq '^(adduser|addgroup|chgrp|chmod) ' "$tmp/calls"; then
  fail "an upgrade recreated the user or changed keygate.ini: $(cat "$tmp/calls")"
else ok; fi

echo "package: $((checks - failures)) passed, $failures failed"
[ "$failures" -eq 0 ]
