#!/usr/bin/env bats
# Concurrency: programs at once on one store.  The stages that hold the
# write lock while they read their input: none waits for the rest of a
# line with the lock held.

load helpers

bats_require_minimum_version 1.5.0

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
