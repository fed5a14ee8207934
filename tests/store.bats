#!/usr/bin/env bats
# The store every program shares: creation, schema, modes, failures.

load helpers

@test "a new store is WAL, versioned, 0600 with its -wal and -shm, and has the whole schema" {
	mkfifo in
	whk-ingest <in >out &
	pid=$!
	exec 5>in
	echo '{"id":"a"}' >&5
	for i in $(seq 100); do [ -s out ] && break; sleep 0.1; done
	# While a program holds it open, the -wal and -shm exist too.
	run mode whk.db-wal
	assert_output 600
	run mode whk.db-shm
	assert_output 600
	exec 5>&-
	wait "$pid"
	run mode whk.db
	assert_output 600
	run sql "PRAGMA journal_mode; PRAGMA user_version; PRAGMA application_id"
	assert_output $'wal\n4\n2003331889'
	run sql "select name from sqlite_master where type = 'table' order by name"
	assert_output $'attempts\nendpoints\nevents\nunrouted\nwebhook_events\nwebhooks'
}

@test "the default store is under XDG_DATA_HOME, else HOME, in a 0700 directory" {
	unset WHK_STORE
	export XDG_DATA_HOME="$BATS_TEST_TMPDIR/xdg"
	run whk-ingest <<<'{"id":"a"}'
	assert_success
	[ -f xdg/whk/whk.db ]
	run mode xdg/whk
	assert_output 700
	unset XDG_DATA_HOME
	HOME="$BATS_TEST_TMPDIR/home" run whk-ingest <<<'{"id":"a"}'
	assert_success
	[ -f home/.local/share/whk/whk.db ]
}

@test "the store is created 0600 whatever the umask" {
	(umask 000; whk-ingest <<<'{"id":"a"}' >/dev/null)
	run mode whk.db
	assert_output 600
}

@test "two programs opening a new store at once migrate it once" {
	for i in 1 2 3 4 5 6; do
		whk-ingest <<<"{\"id\":\"$i\"}" >out$i 2>err$i &
	done
	wait
	run cat err1 err2 err3 err4 err5 err6
	assert_output ""
	run sql "select count(*) from events; PRAGMA user_version"
	assert_output $'6\n4'
}

@test "an empty file becomes a store; another SQLite database is refused" {
	touch whk.db
	run whk-ingest <<<'{"id":"a"}'
	assert_success
	sqlite3 other.db 'create table t(x)'
	run whk-ingest -s other.db <<<'{"id":"a"}'
	assert_failure 3
	assert_output "whk-ingest: cannot open 'other.db': not a whk store"
	run sqlite3 other.db "select name from sqlite_master"
	assert_output t
}

@test "a store of an older version is migrated forward, its data kept" {
	whk-ingest <<<'{"id":"a"}' >/dev/null
	# What version 1 looked like: no body_kind.
	sql "DROP INDEX webhooks_resend; DROP INDEX webhooks_handed;
	    ALTER TABLE webhooks DROP COLUMN handed_until;
	    ALTER TABLE webhooks DROP COLUMN event_seqs;
	    ALTER TABLE webhooks DROP COLUMN body_kind; DROP TABLE unrouted;
	    DROP TRIGGER events_unrouted; DROP TRIGGER events_append_only;
	    CREATE INDEX events_unrouted ON events(seq) WHERE routed_at IS NULL;
	    CREATE TRIGGER events_append_only BEFORE UPDATE OF seq, id, key, type,
	    tenant, received_at, body ON events BEGIN
	    SELECT RAISE(ABORT, 'events are append-only'); END;
	    PRAGMA user_version = 1"
	run whk-ingest <<<'{"id":"b"}'
	assert_success
	run sql "PRAGMA user_version; select count(*) from events;
	    select count(*) from pragma_table_info('webhooks') where name = 'body_kind';
	    select count(*) from unrouted"
	assert_output $'4\n2\n1\n2'
}

@test "version 2's links are kept by version 3, each webhook listing its events" {
	whk-endpoint add a https://example.com/a --batch 2 >/dev/null
	whk-endpoint add b https://example.com/b >/dev/null
	events 3 | whk-ingest | whk-batch >/dev/null
	# What version 2 looked like: no event_seqs, pairs with foreign keys
	# and an index by webhook.
	sql "DROP INDEX webhooks_resend; DROP INDEX webhooks_handed;
	    ALTER TABLE webhooks DROP COLUMN handed_until;
	    ALTER TABLE webhooks DROP COLUMN event_seqs;
	    CREATE TABLE v2(event_seq INTEGER NOT NULL REFERENCES events(seq),
	    endpoint_id INTEGER NOT NULL REFERENCES endpoints(id),
	    webhook_seq INTEGER NOT NULL REFERENCES webhooks(seq),
	    PRIMARY KEY(event_seq, endpoint_id)) WITHOUT ROWID;
	    INSERT INTO v2 SELECT * FROM webhook_events; DROP TABLE webhook_events;
	    ALTER TABLE v2 RENAME TO webhook_events;
	    CREATE INDEX webhook_events_webhook ON webhook_events(webhook_seq);
	    PRAGMA user_version = 2"
	run whk-endpoint list --format json
	assert_success
	run sql "PRAGMA user_version; SELECT p.name || ' ' || w.event_seqs
	    FROM webhooks w JOIN endpoints p ON p.id = w.endpoint_id ORDER BY w.seq;
	    SELECT count(*) FROM webhook_events;
	    SELECT count(*) FROM sqlite_master WHERE name = 'webhook_events_webhook';
	    SELECT count(*) FROM pragma_foreign_key_list('webhook_events')"
	assert_output $'4\nb [1]\na [1,2]\nb [2]\nb [3]\na [3]\n6\n0\n0'
}

@test "version 3 to 4: failures scheduled before keep their times; the hand-out column and the resend index arrive" {
	whk-endpoint add a https://example.com/a >/dev/null
	events 2 | whk-ingest | whk-batch >/dev/null
	sql "UPDATE webhooks SET state = 'failed', attempts = 1, next_at = 12345
	    WHERE seq = 1;
	    DROP INDEX webhooks_resend; DROP INDEX webhooks_handed;
	    ALTER TABLE webhooks DROP COLUMN handed_until;
	    PRAGMA user_version = 3"
	run whk-endpoint list --format json
	assert_success
	run sql "PRAGMA user_version; SELECT state, attempts, next_at FROM webhooks ORDER BY seq;
	    SELECT count(*) FROM pragma_table_info('webhooks') WHERE name = 'handed_until';
	    SELECT count(*) FROM sqlite_master WHERE name IN ('webhooks_resend', 'webhooks_handed')"
	assert_output $'4\nfailed|1|12345\npending|0|\n1\n2'
}

@test "a store from a newer whk is refused, not downgraded" {
	whk-ingest <<<'{"id":"a"}' >/dev/null
	sql "PRAGMA user_version = 99"
	run whk-ingest <<<'{"id":"b"}'
	assert_failure 3
	assert_output "whk-ingest: cannot open '$WHK_STORE': schema version 99 is newer than this whk knows (4)"
	run sql "select count(*) from events"
	assert_output 1
}

@test "a corrupt file gives one line and exit 3" {
	head -c 8192 /dev/urandom >whk.db
	cp whk.db before
	run whk-ingest <<<'{"id":"a"}'
	assert_failure 3
	assert_output "whk-ingest: cannot open '$WHK_STORE': file is not a database"
	cmp whk.db before
	run whk-endpoint list
	assert_failure 3
}

@test "a store damaged inside gives exit 3, never a crash" {
	events 3000 | whk-ingest >/dev/null
	# Keep SQLite's header, smash the pages behind it.
	size=$(stat -c %s whk.db)
	dd if=/dev/urandom of=whk.db bs=4096 seek=2 count=$((size / 4096 - 2)) conv=notrunc 2>/dev/null
	run whk-ingest <<<'{"id":"x"}'
	[ "$status" -eq 3 ]
	[ "${#lines[@]}" -eq 1 ]
	assert_output --regexp "^whk-ingest: .*'$WHK_STORE'"
}

@test "a store locked past the busy timeout gives exit 3 and stores nothing" {
	whk-ingest <<<'{"id":"a"}' >/dev/null
	sqlite3 "$WHK_STORE" "BEGIN IMMEDIATE" ".system touch locked" ".system sleep 3" &
	for i in $(seq 100); do [ -e locked ] && break; sleep 0.05; done
	WHK_BUSY_TIMEOUT=200ms run whk-ingest <<<'{"id":"b"}'
	assert_failure 3
	assert_output "whk-ingest: store '$WHK_STORE' is locked by another process (waited 200ms)"
	wait
	run sql "select key from events"
	assert_output a
}

@test "a writer waits for a short lock instead of failing" {
	whk-ingest <<<'{"id":"a"}' >/dev/null
	sqlite3 "$WHK_STORE" "BEGIN IMMEDIATE" ".system touch locked" ".system sleep 0.5" &
	for i in $(seq 100); do [ -e locked ] && break; sleep 0.05; done
	run whk-ingest <<<'{"id":"b"}'
	assert_success
	wait
	run sql "select key from events order by seq"
	assert_output $'a\nb'
}

@test "a read-only store gives exit 3 and a clear error" {
	mkdir ro
	whk-ingest -s ro/whk.db <<<'{"id":"a"}' >/dev/null
	chmod 644 ro/whk.db
	chmod 755 ro
	chmod 755 "$BATS_TEST_TMPDIR"
	run as_nobody whk-ingest -s "$PWD/ro/whk.db" <<<'{"id":"b"}'
	assert_failure 3
	assert_output --partial "whk-ingest: cannot open '$PWD/ro/whk.db'"
	run sqlite3 ro/whk.db "select key from events"
	assert_output a
}

@test "a full disk: exit 3, nothing acknowledged that was not stored, the store intact" {
	events 20000 >in
	whk-ingest <<<'{"id":"first"}' >/dev/null
	# A file-size limit stands in for a full filesystem.
	run sh -c 'trap "" XFSZ; ulimit -f 1024; exec whk-ingest in >out'
	assert_failure 3
	assert_output "whk-ingest: cannot write '$WHK_STORE': disk full"
	run sql "PRAGMA integrity_check"
	assert_output ok
	printed_are_stored out
	[ "$(sql 'select count(*) from events')" -lt 20001 ]
}

@test "a WAL grown while a reader held an old snapshot is cut back to 16 MiB once the reader moves on" {
	whk-ingest <<<'{"id":"first"}' >/dev/null
	# Another connection stays open throughout, as a cron store's always
	# has one: SQLite drops the WAL when its last connection closes.
	mkfifo cmds
	sqlite3 "$WHK_STORE" <cmds >reader &
	exec 5>cmds
	echo "BEGIN; SELECT count(*) FROM events;" >&5
	for i in $(seq 100); do [ -s reader ] && break; sleep 0.1; done
	pad=$(printf '%01000d' 0)
	seq 25000 | sed "s/.*/{\"id\":\"&\",\"p\":\"$pad\"}/" | whk-ingest >/dev/null
	grown=$(stat -c %s whk.db-wal)
	[ "$grown" -gt $((24 * 1048576)) ]
	echo "COMMIT; SELECT 'done';" >&5
	for i in $(seq 100); do grep -q done reader && break; sleep 0.1; done
	# A commit checkpoints everything; the next one starts the WAL over.
	whk-ingest <<<'{"id":"b"}' >/dev/null
	whk-ingest <<<'{"id":"c"}' >/dev/null
	run stat -c %s whk.db-wal
	assert_output 16777216
	exec 5>&-
	wait
	run sql "select count(*) from events"
	assert_output 25003
}

@test "events and attempts are append-only" {
	whk-ingest <<<'{"id":"a","v":1}' >/dev/null
	run sql "UPDATE events SET body = '{}'"
	assert_failure
	assert_output --partial "events are append-only"
	run sql "select body from events"
	assert_output '{"id":"a","v":1}'
}

@test "the later programs' queries use indexes, never a scan of a whole table" {
	whk-ingest <<<'{"id":"a"}' >/dev/null
	plan() { sql "EXPLAIN QUERY PLAN $1" | grep -E 'SCAN (events|webhooks|attempts|webhook_events)$' || true; }
	run plan "SELECT e.seq FROM unrouted u JOIN events e ON e.seq = u.seq WHERE u.seq > 5 ORDER BY u.seq LIMIT 100"
	assert_output ""
	run plan "SELECT seq FROM events WHERE id = 'evt_x'"
	assert_output ""
	run plan "SELECT seq FROM webhooks WHERE endpoint_id = 1 AND attempts = 0 AND state = 'pending' ORDER BY seq LIMIT 100"
	assert_output ""
	run plan "SELECT seq FROM webhooks WHERE state IN ('pending', 'failed') AND attempts > 0 AND next_at <= 5"
	assert_output ""
	run plan "SELECT seq FROM webhooks WHERE lease_until IS NOT NULL AND lease_until < 5"
	assert_output ""
	run plan "SELECT * FROM attempts WHERE webhook_seq = 5 ORDER BY n"
	assert_output ""
	run plan "SELECT w.webhook_seq FROM endpoints p JOIN webhook_events w
	    ON w.endpoint_id = p.id AND w.event_seq = 5"
	assert_output ""
	run plan "SELECT e.body FROM webhooks w, json_each(w.event_seqs) j
	    JOIN events e ON e.seq = j.value WHERE w.seq = 5 ORDER BY j.key"
	assert_output ""
	run plan "SELECT id FROM events WHERE key = 'a'"
	assert_output ""
	run plan "SELECT seq FROM webhooks WHERE state = 'dead' ORDER BY seq DESC LIMIT 10"
	assert_output ""
}

@test "a bad WHK_BUSY_TIMEOUT is a usage error, named" {
	WHK_BUSY_TIMEOUT=2h run whk-ingest <<<'{"id":"a"}'
	assert_failure 2
	assert_output "whk-ingest: WHK_BUSY_TIMEOUT: '2h' is over 1h"
	WHK_BUSY_TIMEOUT=abc run whk-endpoint list
	assert_failure 2
	assert_output "whk-endpoint: WHK_BUSY_TIMEOUT: invalid duration 'abc' (use 500ms, 5s, 10m, 2h, 7d)"
	[ ! -e "$WHK_STORE" ]
}
