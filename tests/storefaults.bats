#!/usr/bin/env bats
# Store faults, for every program: a file that is no store, a store
# damaged inside, read-only, a full disk, a store deleted or replaced
# while a program runs.  Each time: one line naming the store, exit 3,
# nothing printed that the store a user opens afterwards does not hold,
# and that store whole.

load helpers

bats_require_minimum_version 1.5.0

# --- helpers of this suite -------------------------------------------------

# One command of each program that opens the store (stdin: one event).
COMMANDS=(
	"whk-ingest"
	"whk-endpoint add b https://example.com/b"
	"whk-endpoint list"
	"whk-batch --pending"
	"whk-deliver --pending"
	"whk-retry"
	"whk-log events"
	"whk-log prune --before 1d"
)

# each_fails MESSAGE [PREFIX...]: every command of COMMANDS, run after
# PREFIX (as_nobody, full 16...), exits 3 and says only "PROGRAM: MESSAGE".
each_fails() {
	local msg=$1 cmd
	shift
	echo '{"id":"late"}' >"$BATS_TEST_TMPDIR/event"
	for cmd in "${COMMANDS[@]}"; do
		# shellcheck disable=SC2086
		run "$@" $cmd <"$BATS_TEST_TMPDIR/event"
		assert_equal "$cmd: $status" "$cmd: 3"
		assert_output "${cmd%% *}: $msg"
	done
}

# reachable: let any user reach this test's directory, as one without
# privileges must (bats makes its run directory 0700).
reachable() {
	local d=$BATS_TEST_TMPDIR
	case $d in "$BATS_RUN_TMPDIR"/*) ;; *) return 0 ;; esac
	while [ "$d" != "$BATS_RUN_TMPDIR" ]; do
		chmod a+x "$d"
		d=${d%/*}
	done
	chmod a+x "$d"
}

# full KIB CMD...: CMD with every file it writes limited to KIB KiB and
# SIGXFSZ ignored: a write past the limit fails as on a full disk.
full() {
	local kib=$1
	shift
	bash -c 'trap "" XFSZ; ulimit -f "$0" && exec "$@"' "$kib" "$@"
}

# intact [FILE]: SQLite finds the store whole.
intact() {
	run sqlite3 -batch "${1:-$WHK_STORE}" "PRAGMA integrity_check"
	assert_output ok
}

# webhooks_are_stored FILE: every webhook FILE printed is in the store.
webhooks_are_stored() {
	jq -r .webhook "$1" | sort >"$BATS_TEST_TMPDIR/printed"
	sql "SELECT id FROM webhooks" | sort >"$BATS_TEST_TMPDIR/stored"
	run comm -23 "$BATS_TEST_TMPDIR/printed" "$BATS_TEST_TMPDIR/stored"
	assert_output ""
}

# attempts_are_stored FILE: every attempt FILE printed is in the store,
# with the outcome printed.
attempts_are_stored() {
	jq -r '"\(.webhook) \(.attempt) \(.outcome)"' "$1" | sort \
	    >"$BATS_TEST_TMPDIR/printed"
	sql "SELECT w.id || ' ' || a.n || ' ' || a.outcome FROM attempts a
	    JOIN webhooks w ON w.seq = a.webhook_seq" | sort \
	    >"$BATS_TEST_TMPDIR/stored"
	run comm -23 "$BATS_TEST_TMPDIR/printed" "$BATS_TEST_TMPDIR/stored"
	assert_output ""
}

# wait_lines FILE N: wait up to 5 s until FILE has at least N lines.
wait_lines() {
	local i
	for i in $(seq 100); do
		[ -f "$1" ] && [ "$(wc -l <"$1")" -ge "$2" ] && return 0
		sleep 0.05
	done
	echo "$1 has $(wc -l <"$1") lines, not $2" >&2
	return 1
}

# stream CMD...: start CMD in the background reading the fifo "in", which
# this shell holds open on fd 5 for reading and writing (so that a write
# neither waits for CMD nor breaks once CMD is gone); stdout to "out",
# stderr to "err"; its pid in $pid.
stream() {
	mkfifo in
	exec 5<>in
	: >out
	"$@" <in >out 2>err 3>&- 5>&- &
	pid=$!
}

# running: the program of stream has not exited.
running() {
	grep -qs '^State:[[:space:]]*[^Z]' "/proc/$pid/status"
}

# say LINE N: write LINE to the stream and wait until "out" has N lines.
say() {
	echo "$1" >&5
	wait_lines out "$2"
}

# printed N: wait up to 5 s until "out" has N lines or the program of
# stream exited.
printed() {
	local i
	for i in $(seq 100); do
		[ "$(wc -l <out)" -ge "$1" ] && return 0
		running || return 0
		sleep 0.05
	done
}

# feed LINE...: write one LINE every 0.1 s while the program still runs,
# as a slow producer would.
feed() {
	local l
	for l in "$@"; do
		running || return 0
		echo "$l" >&5
		sleep 0.1
	done
}

# ended: close the stream and wait up to 10 s for the program to exit
# (then kill it); its exit status in $status.
ended() {
	local i
	exec 5>&-
	for i in $(seq 200); do
		running || break
		sleep 0.05
	done
	kill -KILL "$pid" 2>/dev/null || true
	status=0
	wait "$pid" || status=$?
}

# moved PROGRAM VERB: PROGRAM's line for a store moved under it.
moved() {
	echo "$1: cannot $2 '$WHK_STORE': the store was moved or deleted while in use"
}

# --- faults found on opening -----------------------------------------------

@test "a file that is not a database: every program says so on one line, exits 3 and leaves the file as it was" {
	head -c 8192 /dev/urandom >whk.db
	cp whk.db before
	each_fails "cannot open '$WHK_STORE': file is not a database"
	cmp whk.db before
	[ ! -e whk.db-wal ] && [ ! -e whk.db-shm ]
}

@test "a store damaged inside: every program stops at the damage with exit 3 and one line naming the store, printing nothing" {
	whk-endpoint add a https://example.com/a >/dev/null
	events 200 | whk-ingest | whk-batch >/dev/null
	# Every page but the schema's is overwritten: any read of a table
	# meets the damage.
	sql "SELECT pageno FROM dbstat WHERE name = 'sqlite_schema'" >keep
	py -c '
import sys
keep = {int(l) for l in open("keep")}
with open("whk.db", "r+b") as f:
    size = f.seek(0, 2)
    for p in range(1, size // 4096 + 1):
        if p not in keep:
            f.seek((p - 1) * 4096)
            f.write(b"\xff" * 4096)'
	cp whk.db before
	for cmd in "${COMMANDS[@]}"; do
		# shellcheck disable=SC2086
		run --separate-stderr $cmd <<<'{"id":"late"}'
		assert_equal "$cmd: $status" "$cmd: 3"
		assert_output ""
		assert_regex "$stderr" "^${cmd%% *}: cannot (read|write) '$WHK_STORE': database disk image is malformed\$"
	done
	cmp whk.db before
}

@test "a read-only store: every program exits 3 with one line naming it, and nothing is written or created" {
	mkdir ro
	whk-ingest -s ro/whk.db <<<'{"id":"a"}' >/dev/null
	cp ro/whk.db before
	reachable
	export WHK_STORE=$PWD/ro/whk.db
	# The file read-only in a directory anyone may write to; the
	# directory read-only around a file anyone may write to; both.
	for modes in "444 777" "666 555" "444 555"; do
		chmod "${modes% *}" ro/whk.db
		chmod "${modes#* }" ro
		each_fails "cannot open '$WHK_STORE': store is read-only" as_nobody
		chmod 755 ro
		run ls ro
		assert_output whk.db
		cmp ro/whk.db before
	done
}

@test "a disk too full for the store's shared memory: every program exits 3 with one line, the store unchanged" {
	whk-ingest <<<'{"id":"a"}' >/dev/null
	cp whk.db before
	each_fails "cannot open '$WHK_STORE': disk full" full 16
	cmp whk.db before
	intact
}

# --- a full disk while writing -----------------------------------------------

@test "whk-endpoint, the disk full at its commit: exit 3, nothing printed, the endpoint not added, the store whole" {
	whk-endpoint add a https://example.com/a >/dev/null
	# A filter of 60 KiB: more than the 40 KiB the store may grow by.
	big=$(head -c 60000 /dev/zero | tr '\0' x)
	run --separate-stderr full 40 whk-endpoint add b https://example.com/b \
	    --filter ".x != \"$big\""
	assert_failure 3
	assert_output ""
	assert_equal "$stderr" "whk-endpoint: cannot write '$WHK_STORE': disk full"
	intact
	run sql "SELECT name FROM endpoints"
	assert_output a
	# Room again: the same command works.
	run whk-endpoint add b https://example.com/b --filter ".x != \"$big\""
	assert_success
}

@test "whk-batch, the disk full while it streams: exit 3, every webhook printed is stored, the store whole" {
	whk-endpoint add a https://example.com/a >/dev/null
	whk-endpoint add b https://example.com/b >/dev/null
	events 1500 | whk-ingest >recs
	# A hundred events at a time, each hundred routed (printed) before
	# the next: it commits many times before the disk is full.
	stream full 256 whk-batch
	for ((i = 1; i <= 1500; i += 100)); do
		running || break
		sed -n "$i,$((i + 99))p" recs >&5
		printed $(((i + 99) * 2))
	done
	ended
	assert_equal "$status" 3
	assert_equal "$(cat err)" "whk-batch: cannot write '$WHK_STORE': disk full"
	intact
	webhooks_are_stored out
	# Some were committed before the disk filled, not all.
	n=$(wc -l <out)
	[ "$n" -gt 0 ] && [ "$n" -lt 3000 ]
	run sql "SELECT count(*) FROM events"
	assert_output 1500
	# What was not routed is still to route.
	run whk-batch --pending
	assert_success
	run sql "SELECT count(*) FROM webhooks; SELECT count(*) FROM unrouted"
	assert_output $'3000\n0'
}

@test "whk-deliver, the disk full while it delivers: exit 3, one line, every attempt printed is stored, the store whole" {
	receiver_start
	ep a /ok
	hooks a 300 >recs
	run --separate-stderr full 256 whk-deliver <recs
	assert_failure 3
	assert_equal "$stderr" "whk-deliver: cannot write '$WHK_STORE': disk full"
	echo "$output" >out
	intact
	attempts_are_stored out
	n=$(wc -l <out)
	[ "$n" -gt 0 ] && [ "$n" -lt 300 ]
	run sql "SELECT count(*) FROM webhooks"
	assert_output 300
}

@test "whk-retry, the disk full after it scheduled: exit 3, one line, nothing printed nor handed out, the schedule kept, the store whole" {
	whk-endpoint add a https://example.com/a >/dev/null
	events 3000 | whk-ingest | whk-batch >/dev/null
	t=$(($(date +%s) - 3600))
	sql "UPDATE webhooks SET state = 'failed', attempts = 1,
	    last_attempt_at = ${t}000"
	# Room for the schedule's transaction, not for the hand-out's.
	run --separate-stderr full 550 whk-retry
	assert_failure 3
	assert_output ""
	assert_equal "$stderr" "whk-retry: cannot write '$WHK_STORE': disk full"
	intact
	run sql "SELECT count(*) FROM webhooks WHERE next_at IS NOT NULL;
	    SELECT count(*) FROM webhooks WHERE handed_until IS NOT NULL"
	assert_output $'3000\n0'
	run whk-retry
	assert_success
	[ "${#lines[@]}" -eq 3000 ]
}

@test "whk-log prune, the disk full between its chunks: exit 3, nothing printed, whole chunks pruned, the store whole" {
	whk-endpoint add a https://example.com/a >/dev/null
	events 3000 | whk-ingest | whk-batch >/dev/null
	sql "UPDATE webhooks SET state = 'delivered'"
	# Two days on, everything is older than a day.
	export WHK_NOW=$(($(date +%s) + 2 * 86400))
	run --separate-stderr full 512 whk-log prune --before 1d
	assert_failure 3
	assert_output ""
	assert_equal "$stderr" "whk-log: cannot write '$WHK_STORE': disk full"
	intact
	# A chunk is 1000 webhooks, pruned whole or not at all.
	run sql "SELECT count(*) % 1000, count(*) BETWEEN 1000 AND 2000
	    FROM webhooks; SELECT count(*) FROM webhook_events w WHERE NOT EXISTS
	    (SELECT 1 FROM webhooks h WHERE h.seq = w.webhook_seq)"
	assert_output $'0|1\n0'
	run whk-log prune --before 1d
	assert_success
	run sql "SELECT count(*) FROM webhooks; SELECT count(*) FROM events"
	assert_output $'0\n0'
}

# --- the store moved while a program runs ------------------------------------

@test "whk-ingest on a slow pipe, its store deleted: exit 3 at the next event, nothing printed after, nothing left for the next store" {
	whk-ingest <<<'{"id":"first"}' >/dev/null
	stream whk-ingest
	for i in 1 2 3; do say "{\"id\":\"a$i\"}" "$i"; done
	rm whk.db
	feed '{"id":"b1"}' '{"id":"b2"}' '{"id":"b3"}' '{"id":"b4"}' \
	    '{"id":"b5"}' '{"id":"b6"}' '{"id":"b7"}' '{"id":"b8"}'
	ended
	assert_equal "$status" 3
	assert_equal "$(cat err)" "$(moved whk-ingest write)"
	run jq -r .key out
	assert_output $'a1\na2\na3'
	# The store made next at the path starts empty, and whole.
	run whk-ingest <<<'{"id":"c"}'
	assert_success
	run sql "SELECT key FROM events"
	assert_output c
	intact
}

@test "whk-ingest on a slow pipe, another store moved onto its path: exit 3, nothing printed after, the other store whole and only its own" {
	whk-ingest -s other.db <<<'{"id":"other"}' >/dev/null
	stream whk-ingest
	for i in 1 2 3; do say "{\"id\":\"a$i\"}" "$i"; done
	mv other.db whk.db
	feed '{"id":"b1"}' '{"id":"b2"}' '{"id":"b3"}' '{"id":"b4"}' \
	    '{"id":"b5"}' '{"id":"b6"}' '{"id":"b7"}' '{"id":"b8"}'
	ended
	assert_equal "$status" 3
	assert_equal "$(cat err)" "$(moved whk-ingest write)"
	run jq -r .key out
	assert_output $'a1\na2\na3'
	intact
	run sql "SELECT key FROM events"
	assert_output other
}

@test "whk-ingest on a slow pipe, its store renamed: exit 3, and the renamed file holds every event it printed" {
	stream whk-ingest
	for i in 1 2 3; do say "{\"id\":\"a$i\"}" "$i"; done
	mv whk.db renamed.db
	feed '{"id":"b1"}' '{"id":"b2"}' '{"id":"b3"}' '{"id":"b4"}'
	ended
	assert_equal "$status" 3
	assert_equal "$(cat err)" "$(moved whk-ingest write)"
	intact renamed.db
	export WHK_STORE=$PWD/renamed.db
	printed_are_stored out
	run sql "SELECT key FROM events ORDER BY seq"
	assert_output $'a1\na2\na3'
}

@test "whk-batch streaming, its store deleted: exit 3 at the next record, no webhook printed after" {
	whk-endpoint add a https://example.com/a >/dev/null
	events 8 | whk-ingest >recs
	stream whk-batch
	for i in 1 2 3; do say "$(sed -n "${i}p" recs)" "$i"; done
	rm whk.db
	feed "$(sed -n 4p recs)" "$(sed -n 5p recs)" "$(sed -n 6p recs)" \
	    "$(sed -n 7p recs)" "$(sed -n 8p recs)"
	ended
	assert_equal "$status" 3
	assert_equal "$(cat err)" "$(moved whk-batch write)"
	run wc -l <out
	assert_output 3
}

@test "whk-deliver streaming, another store moved onto its path: exit 3 at the next record, nothing sent or printed after" {
	receiver_start
	ep a /ok
	hooks a 8 >recs
	whk-ingest -s other.db <<<'{"id":"other"}' >/dev/null
	stream whk-deliver
	for i in 1 2 3; do say "$(sed -n "${i}p" recs)" "$i"; done
	mv other.db whk.db
	feed "$(sed -n 4p recs)" "$(sed -n 5p recs)" "$(sed -n 6p recs)" \
	    "$(sed -n 7p recs)" "$(sed -n 8p recs)"
	ended
	assert_equal "$status" 3
	assert_equal "$(cat err)" "$(moved whk-deliver write)"
	run jq -r .outcome out
	assert_output $'delivered\ndelivered\ndelivered'
	assert_equal "$(received | wc -l)" 3
	intact
	run sql "SELECT key FROM events; SELECT count(*) FROM webhooks"
	assert_output $'other\n0'
}

@test "whk-retry reading records, its store deleted meanwhile: exit 3, nothing printed" {
	receiver_start
	ep a /fail
	hooks a 3 | whk-deliver >attempts || true
	stream env WHK_NOW=$(($(date +%s) + 3600)) whk-retry
	# Open once its -wal is there.
	for i in $(seq 100); do [ -e whk.db-wal ] && break; sleep 0.05; done
	cat attempts >&5
	rm whk.db
	ended
	assert_equal "$status" 3
	assert_equal "$(cat err)" "$(moved whk-retry write)"
	run cat out
	assert_output ""
}

@test "whk-log follow, its store deleted: exit 3 with one line instead of following a file no one writes" {
	whk-ingest <<<'{"id":"a"}' >/dev/null
	stream whk-log follow
	# Open once its -wal is there.
	for i in $(seq 100); do [ -e whk.db-wal ] && break; sleep 0.05; done
	rm whk.db
	ended
	assert_equal "$status" 3
	assert_equal "$(cat err)" "$(moved whk-log read)"
	run cat out
	assert_output ""
}
