# Shared by every suite: each test runs the built programs in its own
# temporary directory, on its own store.

load '/usr/lib/bats/bats-support/load'
load '/usr/lib/bats/bats-assert/load'

WHK_ROOT="$(cd "$BATS_TEST_DIRNAME/.." && pwd)"
export PATH="$WHK_ROOT/bin:$PATH"

setup() {
	cd "$BATS_TEST_TMPDIR" || return 1
	export WHK_STORE="$BATS_TEST_TMPDIR/whk.db"
	unset WHK_NOW WHK_BUSY_TIMEOUT XDG_DATA_HOME
}

# sql QUERY: ask the store directly, as a user with sqlite3 would.
sql() {
	sqlite3 -batch -bail "$WHK_STORE" "$@"
}

# events N [START]: N distinct events of about 150 bytes, one per line.
events() {
	awk -v n="$1" -v s="${2:-0}" 'BEGIN {
		for (i = s; i < s + n; i++)
			printf "{\"id\":\"ev-%d\",\"type\":\"order.created\"," \
			    "\"tenant\":\"t%d\",\"data\":{\"order\":%d," \
			    "\"amount\":%d.%02d,\"note\":\"lorem ipsum dolor\"}}\n",
			    i, i % 7, i, i % 1000, i % 100
	}'
}

# mode FILE: the permission bits, as 600.
mode() {
	stat -c %a "$1"
}

# as_nobody CMD...: run as an unprivileged user (root ignores modes).
as_nobody() {
	if [ "$(id -u)" -eq 0 ]; then
		setpriv --reuid=65534 --regid=65534 --clear-groups -- "$@"
	else
		"$@"
	fi
}

# printed_are_stored FILE: every event id FILE printed is in the store.
printed_are_stored() {
	jq -r .event "$1" | sort >"$BATS_TEST_TMPDIR/printed"
	sql "select id from events" | sort >"$BATS_TEST_TMPDIR/stored"
	run comm -23 "$BATS_TEST_TMPDIR/printed" "$BATS_TEST_TMPDIR/stored"
	assert_output ""
}
