#!/usr/bin/env bats
# Concurrency: every program at once on one store.  Four whk-ingest fed
# by producers that write in bursts, two of them in whk-ingest |
# whk-batch | whk-deliver pipelines; beside them the two lines of
# share/examples/crontab run again and again, whk-log answers queries
# and a whk-log -f follows the attempts.  No one is told the store is
# locked, every exit status is the documented one, nothing is lost, and
# the WAL file stays bounded while readers come and go.  Then the stages
# that hold the write lock while they read their input: none waits for
# the rest of a line with the lock held.
#
# Short in `make check` (about 10 s of load); WHK_FULL=1 (make
# check-full): a minute.

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

# produce I SECONDS: producer I's events, ev-N for N from I * 10^7 on, in
# bursts of 25 every quarter of a second for SECONDS (100 a second), as
# an application logs them.
produce() {
	awk -v s="$(($1 * 10000000))" -v n="$(($2 * 4))" 'BEGIN {
		for (b = 0; b < n; b++) {
			for (i = s + b * 25; i < s + b * 25 + 25; i++)
				printf "{\"id\":\"ev-%d\",\"type\":\"order.created\"," \
				    "\"tenant\":\"t%d\",\"data\":{\"order\":%d," \
				    "\"note\":\"lorem ipsum dolor\"}}\n", i, i % 7, i
			fflush()
			system("sleep 0.25")
		}
	}'
}

# pipeline I SECONDS: produce I | whk-ingest | whk-batch | whk-deliver;
# whk-ingest's stdout in ingest.I.out, whk-deliver's in deliver.I.out,
# their stderr in .err, the statuses in pipeline.I.st.
pipeline() {
	set +e
	produce "$1" "$2" | whk-ingest 2>"ingest.$1.err" |
	    tee "ingest.$1.out" | whk-batch 2>"batch.$1.err" |
	    whk-deliver >"deliver.$1.out" 2>"deliver.$1.err"
	echo "${PIPESTATUS[*]}" >"pipeline.$1.st"
}

# ingest I SECONDS: produce I | whk-ingest alone; its events are left to
# the reconciliation that runs beside it.
ingest() {
	set +e
	produce "$1" "$2" | whk-ingest >"ingest.$1.out" 2>"ingest.$1.err"
	echo "${PIPESTATUS[*]}" >"pipeline.$1.st"
}

# delivered_ok STATUS OUTFILE: whk-deliver's exit is 1 when one of its
# attempts failed, else 0.
delivered_ok() {
	if grep -q '"outcome":"failed"' "$2"; then
		[ "$1" -eq 1 ]
	else
		[ "$1" -eq 0 ]
	fi
}

# cron: until the file stop exists, the two lines of
# share/examples/crontab, half a second apart.  Each run's statuses go
# to cron.st as "batch deliver retry deliver" and whether each
# whk-deliver's status was the one its output calls for ("ok"/"bad");
# stderr to cron.err.
cron() {
	local st b d1 r d2
	set +e
	while [ ! -e stop ]; do
		whk-batch --pending 2>>cron.err | whk-deliver --pending -q \
		    >cron.1.out 2>>cron.err
		st="${PIPESTATUS[*]}"
		whk-retry -q 2>>cron.err | whk-deliver -q >cron.2.out 2>>cron.err
		st="$st ${PIPESTATUS[*]}"
		read -r b d1 r d2 <<<"$st"
		delivered_ok "$d1" cron.1.out && d1=ok || d1=bad
		delivered_ok "$d2" cron.2.out && d2=ok || d2=bad
		echo "$st $d1 $d2" >>cron.st
		sleep 0.5
	done
}

# queries: until the file stop exists, whk-log's listings, one show,
# metrics and stats, 0.2 s apart; each status to queries.st, stderr to
# queries.err.
queries() {
	local w
	set +e
	while [ ! -e stop ]; do
		whk-log webhooks -l 20 >q.out 2>>queries.err
		echo "webhooks $?" >>queries.st
		w=$(head -n 1 q.out | jq -r .webhook)
		if [ -n "$w" ] && [ "$w" != null ]; then
			whk-log show "$w" >/dev/null 2>>queries.err
			echo "show $?" >>queries.st
		fi
		whk-log attempts --status failed -l 20 >/dev/null 2>>queries.err
		echo "attempts $?" >>queries.st
		whk-log events --tenant t3 -l 5 >/dev/null 2>>queries.err
		echo "events $?" >>queries.st
		whk-log metrics >/dev/null 2>>queries.err
		echo "metrics $?" >>queries.st
		whk-log stats >/dev/null 2>>queries.err
		echo "stats $?" >>queries.st
		sleep 0.2
	done
}

# wal_sizes: until the file stop exists, the size of the store's -wal
# file, four times a second, one a line in wal.sizes.
wal_sizes() {
	while [ ! -e stop ]; do
		stat -c %s "$WHK_STORE-wal" 2>/dev/null || echo 0
		sleep 0.25
	done >wal.sizes
}

# reconcile: the reconciliation, each run an hour later by WHK_NOW (past
# the leases, hand-outs and the retry schedule), until nothing is left;
# 20 runs at most, their number in $loops.  Fails on any other status
# than documented, or anything said on stderr.
reconcile() {
	local t left st b d1 r d2
	t=$(($(date +%s) + 3600))
	for loops in $(seq 20); do
		{
			WHK_NOW=$t whk-batch --pending 2>rec.err |
			    WHK_NOW=$t whk-deliver --pending -q >rec.1.out \
			    2>>rec.err
			st="${PIPESTATUS[*]}"
		} || true
		{
			WHK_NOW=$t whk-retry -q 2>>rec.err |
			    WHK_NOW=$t whk-deliver -q >rec.2.out 2>>rec.err
			st="$st ${PIPESTATUS[*]}"
		} || true
		read -r b d1 r d2 <<<"$st"
		if [ "$b $r" != "0 0" ] || [ -s rec.err ] ||
		    ! delivered_ok "$d1" rec.1.out ||
		    ! delivered_ok "$d2" rec.2.out; then
			echo "reconciliation $loops: exit $st: $(cat rec.err)" >&2
			return 1
		fi
		left=$(sql "SELECT (SELECT count(*) FROM unrouted) +
		    (SELECT count(*) FROM webhooks WHERE state IN ('pending', 'failed')
		    OR lease_until IS NOT NULL)")
		[ "$left" -eq 0 ] && return 0
		t=$((t + 3600))
	done
	echo "the reconciliation did not converge in 20 runs: $left left" >&2
	return 1
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

@test "4 ingests, 2 pipelines, cron's two lines, whk-log queries and a follower on one store: no lock error, documented exits, nothing lost, a bounded WAL" {
	if [ "${WHK_FULL:-0}" = 1 ]; then
		secs=60
	else
		secs=10
	fi
	receiver_start
	whk-endpoint add a "$RECEIVER/ok?to=a" --allow-private >/dev/null
	whk-endpoint add b "$RECEIVER/ok?to=b" --allow-private --batch 10 \
	    --window 200ms --filter '.data.order % 3 == 0' >/dev/null
	whk-endpoint add c "$RECEIVER/fail-first?to=c" --allow-private \
	    --tenant t2 --batch 3 --schedule '1s*20' >/dev/null

	bg wal_sizes
	bg whk-log -f >follow.out 2>follow.err
	follower=$bgpid
	bg pipeline 1 "$secs"
	bg pipeline 2 "$secs"
	bg ingest 3 "$secs"
	bg ingest 4 "$secs"
	bg cron
	bg queries
	wait_files 300 pipeline.1.st pipeline.2.st pipeline.3.st pipeline.4.st
	touch stop
	sleep 1
	kill -TERM "$follower"
	wait "$follower" && fst=0 || fst=$?

	# No one heard of a lock, and every exit was as documented.
	run cat ingest.1.err ingest.2.err ingest.3.err ingest.4.err \
	    batch.1.err batch.2.err deliver.1.err deliver.2.err cron.err \
	    queries.err follow.err
	assert_output ""
	for i in 1 2; do
		run cat "pipeline.$i.st"
		assert_output --regexp '^0 0 0 0 [01]$'
		delivered_ok "${output##* }" "deliver.$i.out"
	done
	for i in 3 4; do
		run cat "pipeline.$i.st"
		assert_output "0 0"
	done
	run eval 'cut -d" " -f1,3 cron.st | sort -u'
	assert_output "0 0"
	run eval 'cut -d" " -f5,6 cron.st | sort -u'
	assert_output "ok ok"
	run eval 'cut -d" " -f2 queries.st | sort -u'
	assert_output 0
	assert_equal "$fst" 0

	reconcile

	# Every event produced was stored and printed, once.
	produced=$((4 * secs * 100))
	cat ingest.?.out | jq -r .event | sort >printed
	sql "SELECT id FROM events" | sort >stored
	run diff printed stored
	assert_success
	assert_equal "$(wc -l <stored)" "$produced"
	run sql "SELECT count(*) FROM events WHERE key NOT LIKE 'ev-%'"
	assert_output 0

	# Routed and delivered: each stored event reached each endpoint it
	# matches, each webhook was answered 2xx once and never sent twice
	# at the same moment.
	run sql "SELECT count(*) FROM unrouted"
	assert_output 0
	run sql "SELECT state, count(*) FROM webhooks GROUP BY 1"
	assert_output "delivered|$(sql 'SELECT count(*) FROM webhooks')"
	sql "SELECT key FROM events" | matching >expected
	received_pairs >pairs
	cut -d' ' -f1,2 pairs | sort -u >got
	run comm -3 expected got
	assert_output ""
	run eval "cut -d' ' -f1,2 pairs | uniq -d"
	assert_output ""
	run eval 'received | jq -r "select(.status == 200) | .id" | sort | uniq -d'
	assert_output ""
	run eval 'received | jq .concurrent | sort -u'
	assert_output 1

	# The follower printed each attempt recorded while it ran, in order,
	# none twice and none skipped.
	jq -r .id follow.out >followed
	[ "$(wc -l <followed)" -gt 0 ]
	first=$(head -n 1 followed)
	last=$(tail -n 1 followed)
	sql "SELECT id FROM attempts WHERE seq BETWEEN
	    (SELECT seq FROM attempts WHERE id = '$first') AND
	    (SELECT seq FROM attempts WHERE id = '$last') ORDER BY seq" >recorded
	run diff followed recorded
	assert_success

	run sql "PRAGMA integrity_check"
	assert_output ok

	# The WAL stayed bounded.
	walmax=$(sort -n wal.sizes | tail -n 1)
	if [ "$walmax" -gt "$WAL_MAX" ]; then
		echo "the WAL grew to $walmax bytes: $(tr '\n' ' ' <wal.sizes)" >&2
		return 1
	fi
	echo "# concurrency: ${secs}s, $produced events, $(sql 'SELECT count(*) FROM webhooks') webhooks," \
	    "$(sql 'SELECT count(*) FROM attempts') attempts; $(wc -l <cron.st) cron runs," \
	    "$(wc -l <queries.st) whk-log queries, $(wc -l <followed) attempts followed;" \
	    "WAL at most $walmax bytes ($(wc -l <wal.sizes) samples); $loops reconciliation runs" >&3
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
