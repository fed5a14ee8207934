#!/bin/sh
# Install what whk needs to build and test, when it is missing.
# As root: apt-get install.  Otherwise: print the command to run.
# "deps.sh fuzz": what make fuzz needs besides (clang and libFuzzer).
pkgs="make gcc pkg-config libcurl4-openssl-dev libsqlite3-dev libjq-dev
libonig-dev libssl-dev sqlite3 bats bats-support bats-assert bats-file
curl jq time python3 bc mandoc bash-completion zsh fish openssl
nghttp2-server"
[ "${1:-}" = fuzz ] && pkgs="$pkgs clang libclang-rt-dev"

command -v dpkg-query >/dev/null 2>&1 || {
	echo "deps: not a Debian system; install the equivalents of:" $pkgs >&2
	exit 0
}
missing=
for p in $pkgs; do
	dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null |
	    grep -q 'install ok installed' || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
	echo "deps: missing:$missing" >&2
	echo "deps: run: sudo apt-get install -y$missing" >&2
	exit 1
fi
echo "deps: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null &&
    apt-get install -y -qq --no-install-recommends $missing >/dev/null ||
    { echo "deps: apt-get install$missing failed" >&2; exit 1; }
