#!/bin/sh
# The Debian packages fp8mac needs (the Makefile's sysdeps step; tested by tests/test_install.py).
#
#   sh scripts/sysdeps.sh STAMP PACKAGE=CHECK...
#
# CHECK shows PACKAGE is installed: a file (an absolute path) or a command on PATH. When every
# check passes, STAMP is touched. Otherwise, as root, the missing packages are installed with
# $APT_GET (default apt-get) and checked again; a package still missing is named and STAMP is not
# written (so the next make tries again). Not root: a one-line install hint, no STAMP.
# AS_ROOT=yes|no overrides the `id -u` test. The script always exits 0: the tests that need a
# missing package fail and name it.
#
# apt-get runs without PYTHONWARNINGS: the Makefile exports PYTHONWARNINGS=error for our Python,
# and Debian's python3 packages' post-install scripts (`python3.11 -c 'import imp'`) fail under it.

set -u
stamp=$1
shift
APT_GET=${APT_GET:-apt-get}
if [ -z "${AS_ROOT:-}" ]; then
    if [ "$(id -u)" = 0 ]; then AS_ROOT=yes; else AS_ROOT=no; fi
fi

# The packages among PACKAGE=CHECK... whose check fails, space-separated.
missing() {
    for dep in "$@"; do
        check=${dep#*=}
        case $check in
            /*) [ -e "$check" ] ;;
            *) command -v "$check" >/dev/null 2>&1 ;;
        esac || printf '%s ' "${dep%%=*}"
    done
}

pkgs=$(missing "$@")
pkgs=${pkgs% }
if [ -z "$pkgs" ]; then
    touch "$stamp"
    exit 0
fi

if [ "$AS_ROOT" != yes ] || ! command -v "$APT_GET" >/dev/null 2>&1; then
    echo "fp8mac: missing system packages: $pkgs. Install them (Debian/Ubuntu:" \
        "sudo apt-get install --no-install-recommends $pkgs); tests that need them will fail until then."
    exit 0
fi

echo "fp8mac: installing Debian packages: $pkgs"
unset PYTHONWARNINGS
export DEBIAN_FRONTEND=noninteractive
# $pkgs unquoted: one argument per package.
if ! { "$APT_GET" update -qq && "$APT_GET" install -y -qq --no-install-recommends $pkgs >/dev/null; }; then
    echo "fp8mac: $APT_GET failed" >&2
fi
still=$(missing "$@")
still=${still% }
if [ -n "$still" ]; then
    echo "fp8mac: still missing after $APT_GET: $still. Install them by hand" \
        "(sudo apt-get install --no-install-recommends $still); tests that need them will fail until then." >&2
    exit 0
fi
touch "$stamp"
