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

# --- the test receiver (used by deliver.bats) -------------------------------
# receiver_start [FLAGS...]: start bin/test-receiver (FLAGS are its own,
# e.g. --secret whsec_...) on a free loopback port, in the background, in
# a directory of its own under the test's; wait until it listens, then
# export RECEIVER (its base URL, http://127.0.0.1:PORT), RECEIVER_LOG (its
# NDJSON log) and RECEIVER_PID.  Several may run in one test: save the
# variables between calls.  Every receiver started is stopped by
# receivers_stop, which the teardown below runs; a suite that defines its
# own teardown() and starts receivers must call receivers_stop in it.
receiver_start() {
	local n dir pid host=127.0.0.1 a prev= i
	n=$(($(cat "$BATS_TEST_TMPDIR/receivers" 2>/dev/null | wc -l) + 1))
	dir="$BATS_TEST_TMPDIR/receiver.$n"
	mkdir -p "$dir" || return 1
	for a in "$@"; do
		[ "$prev" = --bind ] && host=$a
		prev=$a
	done
	case $host in *:*) host="[$host]" ;; esac
	# fd 3 closed: bats waits for whoever holds it open.
	test-receiver --port-file "$dir/port" --log "$dir/log" "$@" \
	    </dev/null >"$dir/stderr" 2>&1 3>&- &
	pid=$!
	echo "$pid" >>"$BATS_TEST_TMPDIR/receivers"
	for i in $(seq 200); do
		[ -s "$dir/port" ] && break
		if ! kill -0 "$pid" 2>/dev/null; then
			echo "test-receiver did not start: $(cat "$dir/stderr")" >&2
			return 1
		fi
		sleep 0.025
	done
	if ! [ -s "$dir/port" ]; then
		echo "test-receiver wrote no port file in 5 s" >&2
		return 1
	fi
	: >>"$dir/log"
	export RECEIVER="http://$host:$(cat "$dir/port")"
	export RECEIVER_LOG="$dir/log" RECEIVER_PID=$pid
}

# received [LOG]: the receiver's log, one NDJSON line per request (the last
# receiver started, unless LOG is given).
received() {
	cat "${1:-$RECEIVER_LOG}"
}

# wait_received N [LOG]: wait up to 10 s until the receiver logged at
# least N requests.
wait_received() {
	local i
	for i in $(seq 200); do
		[ "$(received "${2:-}" | wc -l)" -ge "$1" ] && return 0
		sleep 0.05
	done
	echo "the receiver logged $(received "${2:-}" | wc -l) requests, not $1" >&2
	return 1
}

# receivers_stop: stop every receiver this test started (SIGTERM, then
# SIGKILL after 5 s).
receivers_stop() {
	local pid i
	[ -f "$BATS_TEST_TMPDIR/receivers" ] || return 0
	while read -r pid; do
		kill -TERM "$pid" 2>/dev/null || continue
		for i in $(seq 100); do
			# (An exited child stays a zombie until waited for.)
			grep -qs '^State:[[:space:]]*[^Z]' "/proc/$pid/status" ||
			    break
			sleep 0.05
		done
		kill -KILL "$pid" 2>/dev/null
		wait "$pid" 2>/dev/null
	done <"$BATS_TEST_TMPDIR/receivers"
	rm -f "$BATS_TEST_TMPDIR/receivers"
	return 0
}

# (bats defines an empty teardown before it loads a suite: a suite that
# defines its own after loading this file replaces this one.)
teardown() {
	receivers_stop
}
# --- end of the test receiver ----------------------------------------------

# --- shared by the suites that deliver -----------------------------------

# line_of NAME: the printed record(s) of endpoint NAME in $output.
line_of() {
	jq -c --arg e "$1" 'select(.endpoint == $e)' <<<"$output"
}

# leased: how many webhooks hold a lease.
leased() {
	sql "SELECT count(*) FROM webhooks WHERE lease_until IS NOT NULL
	    OR lease_owner IS NOT NULL"
}

# selfsigned DIR: a key and a self-signed certificate for 127.0.0.1, in
# DIR/key.pem and DIR/cert.pem.
selfsigned() {
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
	    -nodes -days 1 -subj /CN=127.0.0.1 \
	    -addext subjectAltName=IP:127.0.0.1 -keyout "$1/key.pem" \
	    -out "$1/cert.pem" 2>"$1/req.err" ||
	    { cat "$1/req.err" >&2; return 1; }
}

# wait_port PORT: wait up to 10 s until something listens on loopback PORT.
wait_port() {
	local i
	for i in $(seq 200); do
		(exec 4<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
		sleep 0.05
	done
	echo "nothing listens on port $1" >&2
	return 1
}

# free_port: a loopback TCP port nobody listens on.
free_port() {
	py -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}

# wait_files SECONDS FILE...: wait up to SECONDS until each FILE exists
# (a stage that hangs fails the test instead of hanging it).
wait_files() {
	local i f n limit=$1
	shift
	for i in $(seq $((limit * 10))); do
		n=0
		for f in "$@"; do
			[ -e "$f" ] && n=$((n + 1))
		done
		[ "$n" -eq $# ] && return 0
		sleep 0.1
	done
	echo "not done after $limit s: $*" >&2
	return 1
}

# The crash and concurrency suites' endpoints a, b and c (URLs ending in
# to=a, to=b, to=c) and the events of events(): who should get what, and
# who got what.

# matching: for the event keys on stdin (ev-N), each "ENDPOINT KEY" pair
# the endpoints should get by their rules (a: all; b: order N divisible
# by 3; c: tenant t2, N % 7 == 2), worked out here, not by whk-batch.
matching() {
	awk '{ n = substr($1, 4) + 0; print "a " $1
		if (n % 3 == 0) print "b " $1
		if (n % 7 == 2) print "c " $1 }' | sort -u
}

# received_pairs: from the receiver's log, "ENDPOINT KEY WEBHOOK" for
# each event of each body answered 2xx (the endpoint by the to= of its
# URL; a body is one event or an array of them).
received_pairs() {
	received | jq -r 'select(.status >= 200 and .status < 300) |
	    (.path | capture("to=(?<e>[a-z])").e) as $e | .id as $w |
	    .body | fromjson | (if type == "array" then .[] else . end) |
	    "\($e) \(.id) \($w)"' | sort -u
}

# secret_of [N]: "whsec_" and the base64 of N (32) random bytes.
secret_of() {
	printf 'whsec_%s' "$(head -c "${1:-32}" /dev/urandom | base64 -w0)"
}

# ep NAME PATH [OPTIONS...]: an endpoint at the receiver's PATH that gets
# the events of tenant NAME.
ep() {
	local name=$1 path=$2
	shift 2
	whk-endpoint add "$name" "$RECEIVER$path" --allow-private \
	    --tenant "$name" "$@" >/dev/null
}

# hooks TENANT N: N new events of TENANT, ingested and batched; prints
# whk-batch's records (whk-deliver's input).
hooks() {
	local i start
	start=$(cat "$BATS_TEST_TMPDIR/hooks.n" 2>/dev/null || echo 0)
	echo $((start + $2)) >"$BATS_TEST_TMPDIR/hooks.n"
	for ((i = start; i < start + $2; i++)); do
		printf '{"id":"%s-%d","tenant":"%s","n":%d}\n' "$1" "$i" "$1" "$i"
	done | whk-ingest | whk-batch
}

# like TEXT PATTERN: TEXT is PATTERN, taken literally but for @MSG@ (a
# webhook id), @N@ (a number), @TS@ (an RFC 3339 time in ms, UTC) and
# @ANY@ (anything).
like() {
	local re
	re=$(printf '%s\n' "$2" | sed -e 's/[][\.*^$(){}+?|]/\\&/g' \
	    -e 's/@MSG@/msg_[0-9A-HJKMNP-TV-Z]{26}/g' -e 's/@N@/[0-9]+/g' \
	    -e 's/@TS@/[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}[.][0-9]{3}Z/g' \
	    -e 's/@ANY@/.*/g')
	assert_regex "$1" "^$re\$"
}

# py ARGS...: Python 3 (the system's, when there is one: it starts faster
# than a version manager's shim).
py() {
	if [ -x /usr/bin/python3 ]; then
		/usr/bin/python3 "$@"
	else
		python3 "$@"
	fi
}

# iso SECONDS: the time as whk prints it.
iso() {
	date -u -d "@$1" +%Y-%m-%dT%H:%M:%S.000Z
}
