#!/usr/bin/env bash
# Builds an nginx dynamic module against the installed nginx-dev tree (Debian: /usr/share/nginx/src),
# as shared/reference/nginx-pools.md describes: copy the tree into WORK_DIR/nginx-src once, configure
# it with the distribution's own flags (conf_flags) plus --add-dynamic-module=MODULE_DIR (again only
# when MODULE_DIR changes), `make -f objs/Makefile modules`, copy objs/NAME.so to OUT_SO atomically.
# Used by `leakscope demo` (built into a cache directory) and by test/fixtures/Makefile.
# Needs: bash, cp, a C compiler (cc), make, nginx-dev, and the headers nginx's flags require
# (Debian: libpcre2-dev zlib1g-dev libssl-dev). Installs nothing.
# usage: build-module.sh MODULE_DIR WORK_DIR OUT_SO
set -euo pipefail
mod=$(cd "$1" && pwd); work=$2; out=$3
src_dir=${NGX_SRC_DIR:-/usr/share/nginx/src}
test -f "$src_dir/conf_flags" || { echo "nginx-dev is not installed ($src_dir/conf_flags missing): apt-get install nginx-dev libpcre2-dev zlib1g-dev libssl-dev" >&2; exit 1; }
mkdir -p "$work"
src=$work/nginx-src
if [ ! -f "$src/.copied" ]; then rm -rf "$src"; cp -r "$src_dir" "$src"; touch "$src/.copied"; fi
cd "$src"
if [ ! -f objs/Makefile ] || [ "$(cat objs/.leakscope-configured 2>/dev/null)" != "$mod" ]; then
  . ./conf_flags
  ./configure "${NGX_CONF_FLAGS[@]}" --add-dynamic-module="$mod" >configure.log 2>&1 || { tail -30 configure.log >&2; exit 1; }
  printf '%s' "$mod" > objs/.leakscope-configured
fi
make -f objs/Makefile modules >make.log 2>&1 || { tail -40 make.log >&2; exit 1; }
cp "objs/$(basename "$out")" "$out.tmp.$$"
mv -f "$out.tmp.$$" "$out"
