#!/usr/bin/env bats
# Concurrency: programs at once on one store.  The stages that hold the
# write lock while they read their input: none waits for the rest of a
# line with the lock held.  A whk-log -f whose reader is slow: the WAL
# file stays bounded.

load helpers

bats_require_minimum_version 1.5.0

# The most the -wal file may grow to: 16 MiB.  SQLite checkpoints once the
# WAL holds 1000 pages (4 MiB of 4 KiB pages), and the next writer starts
# it again from its beginning once no reader uses an older snapshot; so
# the file outgrows 4 MiB only by what is committed while readers hold
# snapshots, a query's length each: 4 to 9 MiB as measured under this
# suite's load.  One reader that keeps its snapshot makes it grow with
# every commit instead, steadily: to about 60 MiB in the short form.
WAL_MAX=$((16 * 1024 * 1024))

# Whatever a failed test left running, then the receivers.
teardown() {
	local pid
	if [ -f "$BATS_TEST_TMPDIR/bg.pids" ]; then
		while read -r pid; do
			kill -KILL -- "-$pid" "$pid" 2>/dev/null || true
		done <"$BATS_TEST_TMPDIR/bg.pids"
	fi
	receivers_stop
}

# --- helpers of this suite -------------------------------------------------

# bg CMD...: CMD in the background, its own process group (so that
# teardown can end all of it), its pid in $bgpid.
bg() {
	set -m
	"$@" </dev/null 3>&- &
	bgpid=$!
	set +m
	echo "$bgpid" >>"$BATS_TEST_TMPDIR/bg.pids"
}

# wal_sizes: until the file stop exists, the size of the store's -wal
# file, four times a second, one a line in wal.sizes.
wal_sizes() {
	while [ ! -e stop ]; do
		stat -c %s "$WHK_STORE-wal" 2>/dev/null || echo 0
		sleep 0.25
	done >wal.sizes
}

# hold_lock SECONDS: the store's write lock taken by the sqlite3 shell
# for SECONDS, in the background; returns once it is held.
hold_lock() {
	local i
	sqlite3 "$WHK_STORE" "BEGIN IMMEDIATE" ".system touch locked" \
	    ".system sleep $1" 3>&- &
	echo "$!" >>"$BATS_TEST_TMPDIR/bg.pids"
	for i in $(seq 200); do
		[ -e locked ] && return 0
		sleep 0.025
	done
	echo "the lock was not taken" >&2
	return 1
}

# --- a stage whose input stops in the middle of a line ---------------------
# Each would read the first half of a line with the write lock held, then
# wait for the second half: every other writer of the store waited too,
# and gave up with "locked" after its busy timeout.

@test "whk-ingest waiting for the rest of a line holds no transaction: the lines before it are committed and printed, other writers go on" {
	whk-ingest </dev/null
	hold_lock 1
	# e1 is read at once and waits for the lock; the first half of e2
	# comes meanwhile, the rest 2.5 s later.
	{ echo '{"id":"e1"}'; sleep 0.5; printf '{"id":'; sleep 2.5
	    printf '"e2"}\n'; } | whk-ingest >out 2>err 3>&- &
	pid=$!
	sleep 1.3
	WHK_BUSY_TIMEOUT=1s run --separate-stderr whk-ingest <<<'{"id":"other"}'
	assert_success
	[ -z "$stderr" ]
	run jq -r .key out
	assert_output e1
	wait "$pid"
	run jq -r .key out
	assert_output $'e1\ne2'
	assert_equal "$(cat err)" ""
}

@test "whk-batch waiting for the rest of a record holds no transaction: the webhooks before it are made and printed, other writers go on" {
	whk-endpoint add a http://127.0.0.1:9/a --allow-private >/dev/null
	printf '%s\n' '{"id":"e1"}' '{"id":"e2"}' | whk-ingest >recs
	r1=$(sed -n 1p recs) r2=$(sed -n 2p recs)
	hold_lock 1
	{ echo "$r1"; sleep 0.5; printf '%s' "${r2:0:10}"; sleep 2.5
	    printf '%s\n' "${r2:10}"; } | whk-batch >out 2>err 3>&- &
	pid=$!
	sleep 1.3
	WHK_BUSY_TIMEOUT=1s run --separate-stderr whk-ingest <<<'{"id":"other"}'
	assert_success
	[ -z "$stderr" ]
	assert_equal "$(wc -l <out)" 1
	wait "$pid"
	assert_equal "$(wc -l <out)" 2
	run sql "SELECT count(*) FROM webhook_events"
	assert_output 2
	assert_equal "$(cat err)" ""
}

@test "whk-deliver waiting for the rest of a record holds no write lock: other writers go on" {
	receiver_start
	ep a /ok
	id=$(hooks a 1 | jq -r .webhook)
	{ sleep 0.5; printf '{"webhook":"'; sleep 2.5; printf '%s"}\n' "$id"; } |
	    whk-deliver >out 2>err 3>&- &
	pid=$!
	sleep 1
	WHK_BUSY_TIMEOUT=1s run --separate-stderr whk-ingest <<<'{"id":"other"}'
	assert_success
	[ -z "$stderr" ]
	wait "$pid"
	run jq -r '[.webhook, .outcome] | @tsv' out
	assert_output "$id	delivered"
	assert_equal "$(cat err)" ""
}

# --- a follower whose reader stalls ----------------------------------------

@test "whk-log -f whose reader stalls holds no snapshot: the WAL stays bounded; every attempt reaches the reader once it reads again" {
	receiver_start
	whk-endpoint add a "$RECEIVER/ok" --allow-private >/dev/null
	whk-ingest </dev/null
	# The reader takes nothing until the load is over.
	{
		echo "$BASHPID" >follow.pid
		exec whk-log -f 2>follow.err
	} | { until [ -e loaded ]; do sleep 0.1; done; cat >followed; } 3>&- &
	reader=$!
	until [ -s follow.pid ]; do sleep 0.05; done
	echo "$(cat follow.pid)" >>bg.pids
	bg wal_sizes
	for k in 0 1; do
		events 5000 $((k * 5000)) | whk-ingest | whk-batch |
		    whk-deliver >/dev/null
	done
	touch loaded
	for i in $(seq 200); do
		[ "$(wc -l <followed)" -ge 10000 ] && break
		sleep 0.1
	done
	touch stop
	kill -TERM "$(cat follow.pid)"
	wait "$reader"
	assert_equal "$(cat follow.err)" ""
	run eval 'jq -r .id followed | diff - <(sql "SELECT id FROM attempts ORDER BY seq")'
	assert_success
	walmax=$(sort -n wal.sizes | tail -n 1)
	if [ "$walmax" -gt "$WAL_MAX" ]; then
		echo "the WAL grew to $walmax bytes: $(tr '\n' ' ' <wal.sizes)" >&2
		return 1
	fi
}
