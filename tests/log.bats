#!/usr/bin/env bats
# whk-log: the history, read back.  Every store is built through the real
# pipeline (whk-endpoint add, whk-ingest | whk-batch | whk-deliver against
# bin/test-receiver, whk-retry), with WHK_NOW walking the clock; the few
# layouts several tests read are built once and copied to each (cached).
# SQL only reads the store, except where a test needs latencies to the
# millisecond (an attempt's ms is the real network time): there it moves
# a webhook's first_event_at or delivered_at, and says so.

load helpers

bats_require_minimum_version 1.5.0

# 2026-11-23T10:00:00Z, the clock every test starts from.
T0=1795428000

setup() {
	cd "$BATS_TEST_TMPDIR" || return 1
	export WHK_STORE="$BATS_TEST_TMPDIR/whk.db"
	unset WHK_BUSY_TIMEOUT XDG_DATA_HOME
	export WHK_NOW=$T0
}

# Whatever a test left running in the background (a follower, when an
# assertion failed before it was stopped), and the receivers.
teardown() {
	local pid
	if [ -f "$BATS_TEST_TMPDIR/bg.pids" ]; then
		while read -r pid; do
			[ "$(readlink "/proc/$pid/cwd" 2>/dev/null)" = "$BATS_TEST_TMPDIR" ] ||
			    continue
			kill -KILL "$pid" 2>/dev/null || true
			wait "$pid" 2>/dev/null || true
		done <"$BATS_TEST_TMPDIR/bg.pids"
	fi
	receivers_stop
}

# bg_log NAME ARGS...: whk-log ARGS in the background, stdout to NAME.out,
# stderr to NAME.err; its pid in $bgpid (and killed by teardown, if it
# is still running then).
bg_log() {
	local name=$1
	shift
	whk-log "$@" >"$name.out" 2>"$name.err" 3>&- &
	bgpid=$!
	echo "$bgpid" >>"$BATS_TEST_TMPDIR/bg.pids"
}

# --- helpers of this suite -------------------------------------------------

# put TIME LINE...: the event LINEs ingested and routed at WHK_NOW=TIME;
# prints whk-batch's records.
put() {
	local t=$1
	shift
	printf '%s\n' "$@" | WHK_NOW=$t whk-ingest | WHK_NOW=$t whk-batch
}

# iso SECONDS: the time as whk prints it.
iso() {
	local TZ=UTC
	printf '%(%Y-%m-%dT%H:%M:%S)T.000Z' "$1"
}

# isoms MS: the time in ms as whk prints it.
isoms() {
	local TZ=UTC
	printf '%(%Y-%m-%dT%H:%M:%S)T.%03dZ' $(($1 / 1000)) $(($1 % 1000))
}

# ts_of QUERY: the store's time (ms) QUERY answers, as a JSON value: the
# quoted RFC 3339 time, or null.
ts_of() {
	local v
	v=$(sql "$1")
	if [ -n "$v" ]; then printf '"%s"' "$(isoms "$v")"; else printf null; fi
}

# evt KEY: the id of the event with that key.
evt() {
	sql "SELECT id FROM events WHERE key = '$1'"
}

# msg KEY [ENDPOINT]: the id of the webhook holding the event with that key
# (for ENDPOINT, when given).
msg() {
	sql "SELECT w.id FROM webhooks w JOIN webhook_events x
	    ON x.webhook_seq = w.seq JOIN events e ON e.seq = x.event_seq
	    JOIN endpoints p ON p.id = w.endpoint_id
	    WHERE e.key = '$1' AND ('${2:-}' = '' OR p.name = '${2:-}')"
}

# ev_json ID KEY TYPE TENANT SECONDS ROUTED BODY: an events record; KEY,
# TYPE and TENANT as JSON ("k1" or null).
ev_json() {
	printf '{"event":"%s","key":%s,"type":%s,"tenant":%s,"received_at":"%s","routed":%s,"body":%s}\n' \
	    "$1" "$2" "$3" "$4" "$(iso "$5")" "$6" "$7"
}

# wh_json ID: the webhooks record of ID, as the contract lays it out, from
# the store's columns (the times read as they are stored).
wh_json() {
	local ep state events bytes attempts created status error
	IFS='|' read -r ep state events bytes attempts created status error < <(
	    sql "SELECT p.name, w.state, w.events, w.bytes, w.attempts,
		w.created_at, coalesce(w.last_status, 'null'),
		coalesce(json_quote(w.last_error), 'null')
		FROM webhooks w JOIN endpoints p ON p.id = w.endpoint_id
		WHERE w.id = '$1'")
	printf '{"webhook":"%s","endpoint":"%s","state":"%s","events":%d,"bytes":%d,"attempts":%d,"created_at":"%s","next_at":%s,"delivered_at":%s,"last_status":%s,"last_error":%s}\n' \
	    "$1" "$ep" "$state" "$events" "$bytes" "$attempts" \
	    "$(isoms "$created")" \
	    "$(ts_of "SELECT next_at FROM webhooks WHERE id = '$1'")" \
	    "$(ts_of "SELECT delivered_at FROM webhooks WHERE id = '$1'")" \
	    "$status" "$error"
}

# atm_json LINE SECONDS: the attempts record of the attempt whk-deliver
# printed as LINE, started at SECONDS: LINE, then its id, started_at and
# retry_after.
atm_json() {
	local w n id
	w=$(sed -E 's/.*"webhook":"([^"]*)".*/\1/' <<<"$1")
	n=$(sed -E 's/.*"attempt":([0-9]+).*/\1/' <<<"$1")
	id=$(sql "SELECT a.id FROM attempts a JOIN webhooks w
	    ON w.seq = a.webhook_seq WHERE w.id = '$w' AND a.n = $n")
	printf '%s,"id":"%s","started_at":"%s","retry_after":null}\n' \
	    "${1%\}}" "$id" "$(iso "$2")"
}

# tsv_of: NDJSON records on stdin as the tsv format: a header of the field
# names, then the values (strings bare, null empty, booleans yes and no,
# the rest as JSON).
tsv_of() {
	jq -rs '(.[0] | keys_unsorted | join("\t")),
	    (.[] | [.[] | if . == null then "" elif . == true then "yes"
	    elif . == false then "no" elif type == "string" then .
	    else tojson end] | join("\t"))'
}

# columns: for a table on stdin, how many columns of text its lines make
# together, split where every line has a space (runs of such positions);
# then the header's words.  An aligned table prints the same number twice.
columns() {
	py -c '
import sys
lines = [l.rstrip("\r\n") for l in sys.stdin if l.strip()]
w = max(len(l) for l in lines)
blank = [all(i >= len(l) or l[i] == " " for l in lines) for i in range(w)]
n, prev = 0, True
for b in blank:
    if not b and prev:
        n += 1
    prev = b
print(n, len(lines[0].split()))'
}

# on_tty CMD...: run CMD with stdout on a terminal (script(1)); its output,
# carriage returns removed.
on_tty() {
	local cmd
	printf -v cmd '%q ' "$@"
	script -qec "$cmd" /dev/null </dev/null | tr -d '\r'
}

# --- the store most tests read ---------------------------------------------
#
# Built once for the file, through the pipeline; each test that reads it
# gets a copy of its own (std_store, cached).
#
# Endpoints, oldest first: ok (/ok, tenant acme, a secret and a header),
# off (tenant gamma, disabled: "maintenance"), bad (/fail, tenant beta).
# (Newest first is also their names' order: see the endpoints test for
# an endpoint where the two differ.)
#   T0       k1  acme  order.created  -> ok: delivered at T0 (d1.out)
#   T0+60    k2  beta  order.paid     -> bad: failed (d2.out), retried at
#                                        T0+62 (d2b.out), then dead
#   T0+120   k3  beta  order.created  -> bad: failed (d3.out)
#   T0+180   k4  acme  order.paid     -> ok: pending, never attempted
#   T0+240   (no key) nobody order.created: routed, to no endpoint
#   T0+300   k6  acme  order.created: ingested only, unrouted
# Then WHK_NOW is T0+400.
E1='{"id":"k1","tenant":"acme","type":"order.created","n":1}'
E2='{"id":"k2","tenant":"beta","type":"order.paid","n":2}'
E3='{"id":"k3","tenant":"beta","type":"order.created","n":3}'
E4='{"id":"k4","tenant":"acme","type":"order.paid","n":4}'
E5='{"tenant":"nobody","type":"order.created","n":5}'
E6='{"id":"k6","tenant":"acme","type":"order.created","n":6}'
HEADER_VALUE='hv-4c0ffee-d00d'

build_std() {
	receiver_start >&2
	SECRET=$(secret_of)
	whk-endpoint add ok "$RECEIVER/ok" --allow-private --tenant acme \
	    --secret "$SECRET" --header "X-Api-Key: $HEADER_VALUE" >/dev/null
	whk-endpoint add off "$RECEIVER/ok" --allow-private --tenant gamma >/dev/null
	whk-endpoint disable off --reason maintenance >/dev/null
	whk-endpoint add bad "$RECEIVER/fail" --allow-private --tenant beta >/dev/null
	put $T0 "$E1" >w1.recs
	whk-deliver <w1.recs >d1.out
	put $((T0 + 60)) "$E2" >w2.recs
	WHK_NOW=$((T0 + 60)) whk-deliver <w2.recs >d2.out || true
	WHK_NOW=$((T0 + 60)) whk-retry --schedule 1s >/dev/null
	WHK_NOW=$((T0 + 62)) whk-retry --schedule 1s |
	    WHK_NOW=$((T0 + 62)) whk-deliver >d2b.out || true
	WHK_NOW=$((T0 + 62)) whk-retry --schedule 1s >/dev/null
	put $((T0 + 120)) "$E3" >w3.recs
	WHK_NOW=$((T0 + 120)) whk-deliver <w3.recs >d3.out || true
	put $((T0 + 180)) "$E4" >w4.recs
	put $((T0 + 240)) "$E5" >/dev/null
	printf '%s\n' "$E6" | WHK_NOW=$((T0 + 300)) whk-ingest >/dev/null
	# The layout is what the tests take it to be.
	[ "$(sql "SELECT group_concat(state, ',') FROM
	    (SELECT state FROM webhooks ORDER BY seq)")" = \
	    "delivered,dead,failed,pending" ] ||
	    { echo "build_std: unexpected states" >&2; return 1; }
	[ "$(wc -l <d2b.out)" -eq 1 ] || { echo "build_std: no retry" >&2; return 1; }
	printf 'export WHK_NOW=%d\n' $((T0 + 400))
	printf 'SECRET=%q STD_RECEIVER=%q\n' "$SECRET" "$RECEIVER"
	printf 'W1=%q W2=%q W3=%q W4=%q\n' "$(msg k1)" "$(msg k2)" \
	    "$(msg k3)" "$(msg k4)"
	printf 'K1=%q K2=%q K3=%q K4=%q K6=%q\n' "$(evt k1)" "$(evt k2)" \
	    "$(evt k3)" "$(evt k4)" "$(evt k6)"
	printf 'K5=%q\n' "$(sql "SELECT id FROM events WHERE key IS NULL")"
}

# cached NAME: give this test a copy of the store NAME (with the files of
# its making, and its variables), built the first time a test asks for it
# by build_NAME, through the pipeline, in a directory of its own with a
# receiver of its own, stopped once it is built.  A test that sends more
# starts a receiver and points the endpoints at it.
cached() {
	local dir=$BATS_FILE_TMPDIR/$1 f
	if [ ! -s "$dir/vars" ]; then
		rm -rf "$dir"
		mkdir -p "$dir"
		(
			cd "$dir" || exit 1
			export BATS_TEST_TMPDIR=$dir WHK_STORE=$dir/whk.db WHK_NOW=$T0
			trap 'receivers_stop || true' EXIT
			"build_$1" >"$dir/vars.new"
		) || { echo "cannot build the store '$1'" >&2; return 1; }
		mv "$dir/vars.new" "$dir/vars"
	fi
	for f in "$dir"/*; do
		case $f in
		*/vars | */receiver.* | */receivers | */hooks.n) ;;
		*) cp -r "$f" . ;;
		esac
	done
	# shellcheck disable=SC1091
	. "$dir/vars"
}

# std_store: the standard store; WHK_NOW T0 + 400.
std_store() {
	cached std
}

# The standard store's records, newest first.
std_events() {
	ev_json "$K6" '"k6"' '"order.created"' '"acme"' $((T0 + 300)) false "$E6"
	ev_json "$K5" null '"order.created"' '"nobody"' $((T0 + 240)) true "$E5"
	ev_json "$K4" '"k4"' '"order.paid"' '"acme"' $((T0 + 180)) true "$E4"
	ev_json "$K3" '"k3"' '"order.created"' '"beta"' $((T0 + 120)) true "$E3"
	ev_json "$K2" '"k2"' '"order.paid"' '"beta"' $((T0 + 60)) true "$E2"
	ev_json "$K1" '"k1"' '"order.created"' '"acme"' $T0 true "$E1"
}

std_attempts() {
	atm_json "$(cat d3.out)" $((T0 + 120))
	atm_json "$(cat d2b.out)" $((T0 + 62))
	atm_json "$(cat d2.out)" $((T0 + 60))
	atm_json "$(cat d1.out)" $T0
}

std_endpoints() {
	printf '{"endpoint":"bad","url":"%s/fail","state":"enabled","disabled_reason":null,"pending":0,"failed":1,"delivered":0,"dead":1}\n' "$STD_RECEIVER"
	printf '{"endpoint":"off","url":"%s/ok","state":"disabled","disabled_reason":"maintenance","pending":0,"failed":0,"delivered":0,"dead":0}\n' "$STD_RECEIVER"
	printf '{"endpoint":"ok","url":"%s/ok","state":"enabled","disabled_reason":null,"pending":1,"failed":0,"delivered":1,"dead":0}\n' "$STD_RECEIVER"
}

# ids ARGS...: the ids whk-log ARGS lists, one a line, in its order (the
# first field of each record).
ids() {
	whk-log "$@" | sed -E 's/^\{"[a-z_]+":"([^"]*)".*/\1/'
}

# --- interface -------------------------------------------------------------

@test "--help prints the usage on stdout and exits 0; -V prints the version; no store is made" {
	run --separate-stderr whk-log --help
	assert_success
	assert_line --index 0 "usage: whk-log events|webhooks|attempts|endpoints [-s store] [filters]"
	for w in show follow metrics slo stats prune --jq --limit --format \
	    --before --dry-run --target --within; do
		assert_output --partial -- "$w"
	done
	[ -z "$stderr" ]
	help=$output
	run --separate-stderr whk-log -h
	assert_success
	assert_output "$help"
	run --separate-stderr whk-log -V
	assert_success
	assert_output --regexp '^whk-log [0-9]+\.[0-9]+\.[0-9]+$'
	assert_equal "${output#whk-log }" "$(whk-deliver -V | sed 's/^whk-deliver //')"
	[ -z "$stderr" ]
	[ ! -e "$WHK_STORE" ]
}

@test "usage errors: exit 2, 'whk-log: ...' on stderr, nothing on stdout" {
	std_store
	sql .dump >before
	usage() {
		run --separate-stderr timeout 10 whk-log "$@"
		assert_failure 2
		assert_output ""
		assert_regex "$stderr" '^whk-log: '
	}
	usage
	assert_equal "${stderr%%$'\n'*}" "whk-log: no command (events, webhooks, attempts, endpoints, show, follow, metrics, slo, stats, prune)"
	assert_regex "$stderr" $'\nusage: whk-log '
	usage frobnicate
	assert_equal "${stderr%%$'\n'*}" "whk-log: unknown command 'frobnicate' (events, webhooks, attempts, endpoints, show, follow, metrics, slo, stats, prune)"
	usage events --format xml
	assert_equal "$stderr" "whk-log: --format: 'xml' is not json, table or tsv"
	usage events --bogus
	assert_equal "${stderr%%$'\n'*}" "whk-log: unrecognized option '--bogus'"
	usage events extra
	assert_equal "$stderr" "whk-log: unexpected argument 'extra'"
	usage events --limit ten
	assert_equal "$stderr" "whk-log: --limit: invalid number 'ten' (expected 0 to 9223372036854775807)"
	usage events -l -1
	assert_equal "$stderr" "whk-log: --limit: invalid number '-1' (expected 0 to 9223372036854775807)"
	usage events --since whenever
	assert_equal "$stderr" "whk-log: --since: 'whenever' is not a time (Unix seconds, RFC 3339, or a duration ago such as 1h)"
	usage attempts --until whenever
	assert_equal "$stderr" "whk-log: --until: 'whenever' is not a time (Unix seconds, RFC 3339, or a duration ago such as 1h)"
	usage show
	assert_equal "$stderr" "whk-log: show takes an id"
	usage slo --target lots
	assert_equal "$stderr" "whk-log: --target: 'lots' is not a percentage above 0 and at most 100"
	usage slo --target 0
	usage slo --target 100.1
	usage slo --within soon
	assert_equal "$stderr" "whk-log: --within: invalid duration 'soon' (use 500ms, 5s, 10m, 2h, 7d)"
	usage stats --format xml
	usage prune
	assert_equal "$stderr" "whk-log: prune needs --before (such as --before 90d)"
	usage prune --before soon
	assert_equal "$stderr" "whk-log: --before: invalid duration 'soon' (use 500ms, 5s, 10m, 2h, 7d)"
	WHK_NOW=yesterday usage events
	assert_equal "$stderr" "whk-log: invalid WHK_NOW 'yesterday' (use Unix seconds or RFC 3339)"
	WHK_BUSY_TIMEOUT=forever usage events
	assert_equal "$stderr" "whk-log: WHK_BUSY_TIMEOUT: invalid duration 'forever' (use 500ms, 5s, 10m, 2h, 7d)"
	sql .dump >after
	run diff before after
	assert_success
}

@test "an option or format a command does not take: exit 2 (show, stats: json or table; metrics, follow, prune: no filters)" {
	std_store
	sql .dump >before
	# Each one tried; those not refused listed together.
	: >accepted
	refused() {
		run --separate-stderr timeout 1 whk-log "$@"
		if [ "$status" -ne 2 ] || [ -n "$output" ] ||
		    ! [[ $stderr =~ ^whk-log:\  ]]; then
			echo "whk-log $*: exit $status" >>accepted
		fi
	}
	refused events --target 50
	refused events --within 5m
	refused webhooks --before 1d
	refused attempts --dry-run
	refused show --format tsv "$W1"
	refused show --endpoint ok "$W1"
	refused stats --format tsv
	refused metrics --endpoint ok
	refused metrics --since 1h
	refused metrics --format table
	refused follow --since 1h
	refused prune --before 7d --endpoint bad
	refused prune --before 7d --since 1h
	refused prune --before 7d --status dead
	run cat accepted
	assert_output ""
	sql .dump >after
	run diff before after
	assert_success
}

@test "-s/--store names the store; without it, \$WHK_STORE" {
	std_store
	mv "$WHK_STORE" other.db
	rm -f "$WHK_STORE-wal" "$WHK_STORE-shm"
	run --separate-stderr whk-log endpoints -s other.db
	assert_success
	assert_output "$(std_endpoints)"
	run --separate-stderr whk-log endpoints --store "$PWD/other.db" --jq .endpoint
	assert_success
	assert_output $'"bad"\n"off"\n"ok"'
	WHK_STORE=$PWD/other.db run --separate-stderr whk-log endpoints
	assert_success
	assert_output "$(std_endpoints)"
}

# --- the listings ----------------------------------------------------------

@test "events: NDJSON through a pipe, newest first, each body as stored" {
	std_store
	run --separate-stderr whk-log events
	assert_success
	[ -z "$stderr" ]
	assert_output "$(std_events)"
	run --separate-stderr whk-log events --format json
	assert_output "$(std_events)"
}

@test "webhooks: NDJSON, newest first, the state and last result of each" {
	std_store
	run --separate-stderr whk-log webhooks
	assert_success
	[ -z "$stderr" ]
	assert_output "$(wh_json "$W4"; wh_json "$W3"; wh_json "$W2"; wh_json "$W1")"
	# The layout, said plainly.
	assert_line --index 0 "{\"webhook\":\"$W4\",\"endpoint\":\"ok\",\"state\":\"pending\",\"events\":1,\"bytes\":${#E4},\"attempts\":0,\"created_at\":\"$(iso $((T0 + 180)))\",\"next_at\":null,\"delivered_at\":null,\"last_status\":null,\"last_error\":null}"
	like "${lines[1]}" "{\"webhook\":\"$W3\",\"endpoint\":\"bad\",\"state\":\"failed\",\"events\":1,\"bytes\":${#E3},\"attempts\":1,\"created_at\":\"$(iso $((T0 + 120)))\",\"next_at\":@ANY@,\"delivered_at\":null,\"last_status\":500,\"last_error\":\"HTTP 500\"}"
	like "${lines[2]}" "{\"webhook\":\"$W2\",\"endpoint\":\"bad\",\"state\":\"dead\",\"events\":1,\"bytes\":${#E2},\"attempts\":2,\"created_at\":\"$(iso $((T0 + 60)))\",\"next_at\":@ANY@,\"delivered_at\":null,\"last_status\":500,\"last_error\":\"HTTP 500\"}"
	ms=$(jq .ms d1.out)
	assert_line --index 3 "{\"webhook\":\"$W1\",\"endpoint\":\"ok\",\"state\":\"delivered\",\"events\":1,\"bytes\":${#E1},\"attempts\":1,\"created_at\":\"$(iso $T0)\",\"next_at\":null,\"delivered_at\":\"$(isoms $((T0 * 1000 + ms)))\",\"last_status\":200,\"last_error\":null}"
}

@test "attempts: NDJSON, newest first; the first eight fields as whk-deliver printed them, then id, started_at, retry_after" {
	std_store
	run --separate-stderr whk-log attempts
	assert_success
	[ -z "$stderr" ]
	assert_output "$(std_attempts)"
	[ "${#lines[@]}" -eq 4 ]
	like "${lines[1]}" "{\"webhook\":\"$W2\",\"endpoint\":\"bad\",\"attempt\":2,\"kind\":\"retry\",\"status\":500,\"ms\":@N@,\"outcome\":\"failed\",\"error\":\"HTTP 500\",\"id\":\"atm_@ANY@\",\"started_at\":\"$(iso $((T0 + 62)))\",\"retry_after\":null}"
	# A Retry-After is shown as the time it names.
	receiver_start
	ep later '/retry-after?s=120&status=503'
	hooks later 1 >recs
	WHK_NOW=$((T0 + 500)) whk-deliver <recs >/dev/null || true
	run --separate-stderr whk-log attempts --endpoint later
	assert_success
	like "$output" "{\"webhook\":\"$(jq -r .webhook recs)\",\"endpoint\":\"later\",\"attempt\":1,\"kind\":\"first\",\"status\":503,\"ms\":@N@,\"outcome\":\"failed\",\"error\":\"HTTP 503\",\"id\":\"atm_@ANY@\",\"started_at\":\"$(iso $((T0 + 500)))\",\"retry_after\":\"$(iso $((T0 + 620)))\"}"
}

@test "endpoints: NDJSON, newest first, with the count of webhooks in each state" {
	std_store
	run --separate-stderr whk-log endpoints
	assert_success
	[ -z "$stderr" ]
	assert_output "$(std_endpoints)"
	# The newest first, whatever its name.
	whk-endpoint add zzz https://example.com/hook >/dev/null
	whk-endpoint add aaa https://example.com/hook >/dev/null
	run --separate-stderr whk-log endpoints --jq .endpoint
	assert_success
	assert_output $'"aaa"\n"zzz"\n"bad"\n"off"\n"ok"'
}

@test "--format tsv: a header of the field names, then one line per record, null as empty" {
	std_store
	run --separate-stderr whk-log events --format tsv
	assert_success
	assert_line --index 0 $'event\tkey\ttype\ttenant\treceived_at\trouted\tbody'
	# (Booleans as yes and no, like the tables.)
	assert_line --index 1 "$K6	k6	order.created	acme	$(iso $((T0 + 300)))	no	$E6"
	assert_line --index 2 "$K5		order.created	nobody	$(iso $((T0 + 240)))	yes	$E5"
	assert_output "$(std_events | tsv_of)"
	run --separate-stderr whk-log webhooks --format tsv
	assert_success
	assert_line --index 0 $'webhook\tendpoint\tstate\tevents\tbytes\tattempts\tcreated_at\tnext_at\tdelivered_at\tlast_status\tlast_error'
	assert_line --index 1 "$W4	ok	pending	1	${#E4}	0	$(iso $((T0 + 180)))"$'\t\t\t\t'
	assert_output "$( (wh_json "$W4"; wh_json "$W3"; wh_json "$W2"; wh_json "$W1") | tsv_of)"
	run --separate-stderr whk-log attempts --format tsv
	assert_success
	assert_line --index 0 $'webhook\tendpoint\tattempt\tkind\tstatus\tms\toutcome\terror\tid\tstarted_at\tretry_after'
	assert_output "$(std_attempts | tsv_of)"
	run --separate-stderr whk-log endpoints --format tsv
	assert_success
	assert_output "endpoint	url	state	disabled_reason	pending	failed	delivered	dead
bad	$STD_RECEIVER/fail	enabled		0	1	0	1
off	$STD_RECEIVER/ok	disabled	maintenance	0	0	0	0
ok	$STD_RECEIVER/ok	enabled		1	0	1	0"
	# Filters and --limit hold for tsv too; an empty answer is the header.
	run --separate-stderr whk-log endpoints --format tsv --status disabled -l 1
	assert_output "endpoint	url	state	disabled_reason	pending	failed	delivered	dead
off	$STD_RECEIVER/ok	disabled	maintenance	0	0	0	0"
	run --separate-stderr whk-log webhooks --format tsv --endpoint nope
	assert_success
	assert_output "$(head -n 1 <<<"$(whk-log webhooks --format tsv)")"
}

@test "--format table, and the default on a terminal: a header, then one aligned line per record, newest first" {
	std_store
	for l in events webhooks attempts endpoints; do
		run --separate-stderr whk-log $l --format table
		assert_success
		[ -z "$stderr" ]
		table=$output
		n=$(whk-log $l | wc -l)
		[ "${#lines[@]}" -eq $((n + 1)) ]
		# The header names the fields.
		for f in $(whk-log $l | head -n 1 | jq -r 'keys_unsorted[]' |
		    grep -Ev '^(body|received_at|created_at|started_at|next_at|delivered_at|retry_after|disabled_reason|last_error|error|id|url|bytes)$'); do
			grep -qi -- "$f" <<<"${lines[0]}" ||
			    { echo "$l: no '$f' in '${lines[0]}'" >&2; return 1; }
		done
		# Aligned: the text of the lines makes as many columns as the
		# header has words.
		run columns <<<"$table"
		read -r cols words <<<"$output"
		echo "$l: $cols columns, $words header words"
		[ "$cols" -eq "$words" ]
		# On a terminal, the table is the default.
		assert_equal "$(on_tty whk-log $l)" "$table"
	done
	# Newest first, as the records are.
	run whk-log endpoints --format table
	assert_regex "${lines[1]}" '^bad +http://[^ ]+/fail +enabled '
	assert_regex "${lines[2]}" '^off +http://[^ ]+/ok +disabled +maintenance '
	assert_regex "${lines[3]}" '^ok +http://[^ ]+/ok +enabled '
	run whk-log events --format table
	assert_regex "${lines[1]}" "^$K6 +k6 +order.created +acme +$(iso $((T0 + 300))) +no "
	run whk-log webhooks --format table
	assert_regex "${lines[1]}" "^$W4 +ok +pending "
	assert_regex "${lines[4]}" "^$W1 +ok +delivered "
	run whk-log attempts --format table -l 2
	[ "${#lines[@]}" -eq 3 ]
	assert_regex "${lines[1]}" "^$W3 +bad +1 +first +500 "
	assert_regex "${lines[2]}" "^$W2 +bad +2 +retry +500 "
}

@test "-l/--limit N: the N newest; 0 means no limit" {
	std_store
	run whk-log events -l 2
	assert_success
	assert_output "$(std_events | head -n 2)"
	run whk-log events --limit 0
	assert_output "$(std_events)"
	run whk-log attempts --limit 1
	assert_output "$(std_attempts | head -n 1)"
	run whk-log webhooks -l 3
	assert_output "$(wh_json "$W4"; wh_json "$W3"; wh_json "$W2")"
	run whk-log endpoints -l 1
	assert_output "$(std_endpoints | head -n 1)"
	run whk-log endpoints -l 100
	assert_output "$(std_endpoints)"
	# With filters: the N newest of those that pass.
	run ids attempts --endpoint bad -l 2
	assert_output "$W3
$W2"
	run ids events --tenant acme --limit 2
	assert_output "$K6
$K4"
}

# --- filters ---------------------------------------------------------------

@test "events: --endpoint, --tenant, --type, --status, --since/--until, --event, --webhook, --key; ANDed" {
	std_store
	run ids events --endpoint ok
	assert_output "$K4
$K1"
	run ids events --endpoint bad
	assert_output "$K3
$K2"
	run ids events --endpoint off
	assert_output ""
	run ids events --tenant acme
	assert_output "$K6
$K4
$K1"
	run ids events --type order.paid
	assert_output "$K4
$K2"
	run ids events --status routed
	assert_output "$K5
$K4
$K3
$K2
$K1"
	run ids events --status unrouted
	assert_output "$K6"
	run ids events --since $((T0 + 30)) --until $((T0 + 150))
	assert_output "$K3
$K2"
	run ids events --since "$(iso $((T0 + 30)))" --until "$(iso $((T0 + 150)))"
	assert_output "$K3
$K2"
	# A duration: that long before WHK_NOW (T0 + 400).
	run ids events --since 5m
	assert_output "$K6
$K5
$K4
$K3"
	run ids events --until 5m
	assert_output "$K2
$K1"
	run ids events --event "$K3"
	assert_output "$K3"
	run ids events --webhook "$W2"
	assert_output "$K2"
	run ids events --key k4
	assert_output "$K4"
	# ANDed.
	run ids events --tenant acme --type order.created
	assert_output "$K6
$K1"
	run ids events --tenant acme --status routed --type order.created
	assert_output "$K1"
	run ids events --endpoint ok --key k3
	assert_output ""
	# Full records, not just ids.
	run whk-log events --key k1
	assert_output "$(std_events | tail -n 1)"
}

@test "webhooks: --endpoint, --status (each state), --since/--until, --event, --webhook, --key; ANDed" {
	std_store
	run ids webhooks --endpoint ok
	assert_output "$W4
$W1"
	run ids webhooks --endpoint bad
	assert_output "$W3
$W2"
	run ids webhooks --endpoint off
	assert_output ""
	for s in pending:$W4 failed:$W3 dead:$W2 delivered:$W1; do
		run ids webhooks --status "${s%%:*}"
		assert_output "${s#*:}"
	done
	run ids webhooks --since $((T0 + 30)) --until $((T0 + 150))
	assert_output "$W3
$W2"
	run ids webhooks --since "$(iso $((T0 + 60)))" --until 4m
	assert_output "$W3
$W2"
	run ids webhooks --since 4m
	assert_output "$W4"
	run ids webhooks --event "$K2"
	assert_output "$W2"
	run ids webhooks --event "$K6"
	assert_output ""
	run ids webhooks --webhook "$W3"
	assert_output "$W3"
	run ids webhooks --key k1
	assert_output "$W1"
	run ids webhooks --endpoint bad --status dead
	assert_output "$W2"
	run ids webhooks --endpoint ok --status dead
	assert_output ""
	run whk-log webhooks --key k4
	assert_output "$(wh_json "$W4")"
}

@test "attempts: --endpoint, --status (outcome), --since/--until, --event, --webhook, --key; ANDed" {
	std_store
	atm() {
		sql "SELECT a.id FROM attempts a JOIN webhooks w ON w.seq = a.webhook_seq
		    WHERE w.id = '$1' AND a.n = $2"
	}
	A1=$(atm "$W1" 1) A21=$(atm "$W2" 1) A22=$(atm "$W2" 2) A3=$(atm "$W3" 1)
	aids() {
		whk-log attempts "$@" | sed -E 's/.*"id":"(atm_[^"]*)".*/\1/'
	}
	run aids --endpoint bad
	assert_output "$A3
$A22
$A21"
	run aids --endpoint ok
	assert_output "$A1"
	run aids --endpoint off
	assert_output ""
	run aids --status delivered
	assert_output "$A1"
	run aids --status failed
	assert_output "$A3
$A22
$A21"
	run aids --since $((T0 + 61)) --until "$(iso $((T0 + 150)))"
	assert_output "$A3
$A22"
	run aids --since 5m
	assert_output "$A3"
	run aids --until $((T0 + 30))
	assert_output "$A1"
	run aids --event "$K2"
	assert_output "$A22
$A21"
	run aids --webhook "$W2"
	assert_output "$A22
$A21"
	run aids --webhook "$W4"
	assert_output ""
	run aids --key k3
	assert_output "$A3"
	run aids --key k2 --status failed --until $((T0 + 61))
	assert_output "$A21"
	run whk-log attempts --key k1
	assert_output "$(atm_json "$(cat d1.out)" $T0)"
}

@test "endpoints: --endpoint and --status enabled/disabled" {
	std_store
	run whk-log endpoints --endpoint bad
	assert_success
	assert_output "$(std_endpoints | sed -n 1p)"
	run whk-log endpoints --status disabled
	assert_output "$(std_endpoints | sed -n 2p)"
	run whk-log endpoints --status enabled
	assert_output "$(std_endpoints | sed -n 1p; std_endpoints | sed -n 3p)"
	run whk-log endpoints --status enabled --endpoint off
	assert_success
	assert_output ""
}

@test "an unknown endpoint, event id, key or webhook id: an empty answer, exit 0" {
	std_store
	for l in events webhooks attempts; do
		for f in "--endpoint nope" "--event evt_00000000000000000000000000" \
		    "--key nope" "--webhook msg_00000000000000000000000000" \
		    "--event $W1" "--webhook $K1"; do
			run --separate-stderr whk-log $l $f
			assert_success
			assert_output ""
			[ -z "$stderr" ]
		done
	done
	run --separate-stderr whk-log endpoints --endpoint nope
	assert_success
	assert_output ""
	[ -z "$stderr" ]
}

@test "a filter that does not apply to the listing, or a status it does not have: exit 2, named" {
	std_store
	na() {
		run --separate-stderr whk-log "$2" "$1" "$3"
		assert_failure 2
		assert_output ""
		assert_equal "$stderr" "whk-log: $1 does not apply to $2"
	}
	for l in webhooks attempts endpoints; do
		na --tenant $l acme
		na --type $l order.paid
	done
	bad_status() {
		run --separate-stderr whk-log "$1" --status "$2"
		assert_failure 2
		assert_output ""
		assert_regex "$stderr" "^whk-log: --status: .*'$2'"
	}
	for s in pending delivered enabled bogus; do
		bad_status events $s
	done
	for s in routed delivering enabled ''; do
		bad_status webhooks "$s"
	done
	for s in dead pending routed; do
		bad_status attempts $s
	done
	for s in pending delivered routed; do
		bad_status endpoints $s
	done
	assert_equal "$stderr" "whk-log: --status: 'routed' is not a state of endpoints (enabled disabled)"
	bad_status webhooks routed
	assert_equal "$stderr" "whk-log: --status: 'routed' is not a state of webhooks (pending failed delivered dead)"
	# Each named alone, as the contract words it.
	na --since endpoints 1h
	na --until endpoints 1h
	na --event endpoints "$K1"
	na --webhook endpoints "$W1"
	na --key endpoints k1
}

# --- --jq ------------------------------------------------------------------

@test "--jq: applied to each record, each output one compact line; a projection, a select, several outputs; the format is json" {
	std_store
	run --separate-stderr whk-log events --jq '{key, routed}'
	assert_success
	[ -z "$stderr" ]
	assert_output '{"key":"k6","routed":false}
{"key":null,"routed":true}
{"key":"k4","routed":true}
{"key":"k3","routed":true}
{"key":"k2","routed":true}
{"key":"k1","routed":true}'
	run --separate-stderr whk-log webhooks --jq 'select(.state == "dead") | .webhook'
	assert_success
	assert_output "\"$W2\""
	run --separate-stderr whk-log attempts --endpoint bad --jq '.attempt, .error'
	assert_success
	assert_output '1
"HTTP 500"
2
"HTTP 500"
1
"HTTP 500"'
	run --separate-stderr whk-log events --key k2 --jq '.body | {id, n}'
	assert_output '{"id":"k2","n":2}'
	run --separate-stderr whk-log endpoints --jq 'empty'
	assert_success
	assert_output ""
	# With --jq, json whatever --format says, on a terminal too.
	run --separate-stderr whk-log endpoints --format table --jq .endpoint
	assert_success
	assert_output $'"bad"\n"off"\n"ok"'
	run --separate-stderr whk-log endpoints --format tsv --jq .endpoint
	assert_output $'"bad"\n"off"\n"ok"'
	assert_equal "$(on_tty whk-log endpoints --jq .endpoint)" $'"bad"\n"off"\n"ok"'
	# Applied after the filters and --limit.
	run --separate-stderr whk-log webhooks --endpoint bad -l 1 --jq .state
	assert_output '"failed"'
}

@test "--jq with a syntax error: exit 2, the message names --jq, nothing printed" {
	std_store
	for f in '.[' '{key' 'select(' '.a |' '; DROP TABLE webhooks; --'; do
		run --separate-stderr whk-log events --jq "$f"
		assert_failure 2
		assert_output ""
		assert_regex "$stderr" '^whk-log: '
		assert_regex "$stderr" '--jq'
	done
	run --separate-stderr whk-log follow --jq '.['
	assert_failure 2
	assert_regex "$stderr" '--jq'
	run sql "SELECT count(*) FROM webhooks"
	assert_output 4
}

# --- show ------------------------------------------------------------------

@test "show a webhook: its record, its events, the body as sent, every attempt with status, ms, error and the response's excerpt" {
	receiver_start
	ep b '/fail-first?k=1' --batch 2
	printf '%s\n' '{"id":"b1","tenant":"b","type":"x","s":"caf\u00e9 \"q\""}' \
	    '{"id":"b2","tenant":"b","type":"y","a":[1,{"b":null}]}' |
	    whk-ingest | whk-batch >recs
	[ "$(wc -l <recs)" -eq 1 ]
	id=$(jq -r .webhook recs)
	whk-deliver <recs >a1.out || true
	whk-retry >/dev/null
	WHK_NOW=$((T0 + 10)) whk-retry | WHK_NOW=$((T0 + 10)) whk-deliver >a2.out
	# Then resent to a receiver that hangs up: no status, no response.
	whk-endpoint set b --url "$RECEIVER/reset" >/dev/null
	WHK_NOW=$((T0 + 100)) whk-retry --now "$id" |
	    WHK_NOW=$((T0 + 100)) whk-deliver >a3.out || true
	like "$(cat a3.out)" "{\"webhook\":\"$id\",\"endpoint\":\"b\",\"attempt\":3,\"kind\":\"resend\",\"status\":null,\"ms\":@N@,\"outcome\":\"failed\",\"error\":\"Recv failure: Connection reset by peer\"}"
	export WHK_NOW=$((T0 + 200))
	body=$(received | head -n 1 | jq -j .body)
	assert_equal "$(received | jq -j .body | sort -u | wc -l)" 1
	run --separate-stderr whk-log show "$id"
	assert_success
	[ -z "$stderr" ]
	[ "${#lines[@]}" -eq 1 ]
	rec=$(whk-log webhooks --webhook "$id")
	b1=$(evt b1) b2=$(evt b2)
	r1=$(atm_json "$(cat a1.out)" $T0)
	r2=$(atm_json "$(cat a2.out)" $((T0 + 10)))
	r3=$(atm_json "$(cat a3.out)" $((T0 + 100)))
	# The record, its counts replaced by the lists they count.
	lists=$(jq -c 'del(.events, .attempts)' <<<"$rec")
	assert_output "${lists%\}},\"events\":[\"$b1\",\"$b2\"],\"body\":$body,\"attempts\":[${r1%\}},\"response\":\"{\\\"ok\\\":false,\\\"status\\\":500}\"},${r2%\}},\"response\":\"{\\\"ok\\\":true}\"},${r3%\}},\"response\":null}]}"
	# Said otherwise: the parts, by jq.
	run jq -c '[(.events | length), (.attempts | map([.attempt, .kind, .status, .error, .response]))]' <<<"$output"
	assert_output '[2,[[1,"first",500,"HTTP 500","{\"ok\":false,\"status\":500}"],[2,"retry",200,null,"{\"ok\":true}"],[3,"resend",null,"Recv failure: Connection reset by peer",null]]]'
	# The body is the array of the two events, byte for byte as sent.
	assert_equal "$body" "[$(sql "SELECT group_concat(body, ',') FROM (SELECT body FROM events ORDER BY seq)")]"
	like "$rec" "{\"webhook\":\"$id\",\"endpoint\":\"b\",\"state\":\"@ANY@\",\"events\":2,\"bytes\":${#body},\"attempts\":3,\"created_at\":\"$(iso $T0)\",@ANY@"
}

@test "show an event: its record and every webhook holding it; unrouted: none" {
	receiver_start
	whk-endpoint add x "$RECEIVER/ok" --allow-private --types 'fan.*' >/dev/null
	whk-endpoint add y "$RECEIVER/fail" --allow-private --types 'fan.*' >/dev/null
	E='{"id":"f1","tenant":"t","type":"fan.out","v":[1,2]}'
	put $T0 "$E" >recs
	[ "$(wc -l <recs)" -eq 2 ]
	x=$(jq -r 'select(.endpoint == "x") | .webhook' recs)
	y=$(jq -r 'select(.endpoint == "y") | .webhook' recs)
	jq -c 'select(.endpoint == "x")' recs | whk-deliver >/dev/null
	id=$(evt f1)
	run --separate-stderr whk-log show "$id"
	assert_success
	[ -z "$stderr" ]
	[ "${#lines[@]}" -eq 1 ]
	show=$output
	# As events lists it, then the webhooks, by age.
	rec=$(whk-log events --event "$id")
	assert_equal "${output%%,\"webhooks\":*}" "${rec%\}}"
	run jq -c '.webhooks | map([.webhook, .endpoint, .state, .attempts, .last_status])' <<<"$show"
	assert_output "[[\"$x\",\"x\",\"delivered\",1,200],[\"$y\",\"y\",\"pending\",0,null]]"
	U='{"id":"u1","type":"lone"}'
	printf '%s\n' "$U" | whk-ingest >/dev/null
	run --separate-stderr whk-log show "$(evt u1)"
	assert_success
	assert_output "{\"event\":\"$(evt u1)\",\"key\":\"u1\",\"type\":\"lone\",\"tenant\":null,\"received_at\":\"$(iso $T0)\",\"routed\":false,\"body\":$U,\"webhooks\":[]}"
	# Each webhook as the contract lays it out: these five fields.
	run echo "$show"
	assert_output "{\"event\":\"$id\",\"key\":\"f1\",\"type\":\"fan.out\",\"tenant\":\"t\",\"received_at\":\"$(iso $T0)\",\"routed\":true,\"body\":$E,\"webhooks\":[{\"webhook\":\"$x\",\"endpoint\":\"x\",\"state\":\"delivered\",\"attempts\":1,\"last_status\":200},{\"webhook\":\"$y\",\"endpoint\":\"y\",\"state\":\"pending\",\"attempts\":0,\"last_status\":null}]}"
}

@test "show: an unknown id, or a key, exit 1 'no event or webhook'" {
	std_store
	for bad in msg_00000000000000000000000000 evt_00000000000000000000000000 k1 \
	    "' OR 1=1; --" atm_00000000000000000000000000 "$(sql "SELECT id FROM attempts LIMIT 1")"; do
		run --separate-stderr whk-log show "$bad"
		assert_failure 1
		assert_output ""
		assert_equal "$stderr" "whk-log: no event or webhook '$bad'"
	done
}

@test "show of several ids: each in turn from one snapshot (a JSON line each, blocks apart by a blank line); an unknown one is said, the rest shown, exit 1" {
	std_store
	one=$(whk-log show "$W1")
	two=$(whk-log show "$W2")
	ev=$(whk-log show "$K1")
	run --separate-stderr whk-log show "$W1" "$K1" "$W2"
	assert_success
	assert_output "$one"$'\n'"$ev"$'\n'"$two"
	[ -z "$stderr" ]
	run --separate-stderr whk-log show "$W1" msg_00000000000000000000000000 "$W2"
	assert_failure 1
	assert_output "$one"$'\n'"$two"
	assert_equal "$stderr" "whk-log: no event or webhook 'msg_00000000000000000000000000'"
	run --separate-stderr whk-log show --format table nope "$W1" nope "$W2" nope
	assert_failure 1
	assert_output "$(whk-log show --format table "$W1")"$'\n\n'"$(whk-log show --format table "$W2")"
}

@test "show --format table: a readable block, fields one per line, then the attempts as a table; json when asked, on a terminal too" {
	std_store
	# Json on a terminal when asked.
	assert_equal "$(on_tty whk-log show --format json "$W1")" "$(whk-log show "$W1")"
	run --separate-stderr whk-log show --format table "$W2"
	assert_success
	[ -z "$stderr" ]
	# Fields one per line: the name, then its value.
	printf '%s\n' "$output" | grep -Eiq "^ *webhook:? +$W2 *\$"
	printf '%s\n' "$output" | grep -Eiq "^ *endpoint:? +bad *\$"
	printf '%s\n' "$output" | grep -Eiq "^ *state:? +dead *\$"
	printf '%s\n' "$output" | grep -Eiq "^ *attempts:? +2 *\$"
	printf '%s\n' "$output" | grep -Fq "$K2"
	# Then the attempts, a header and a line each, aligned.
	run eval 'whk-log show --format table "$W2" | grep -Ei -A2 "^ *attempt +kind +status"'
	[ "${#lines[@]}" -eq 3 ]
	assert_regex "${lines[1]}" '^ *1 +first +500 '
	assert_regex "${lines[2]}" '^ *2 +retry +500 '
	run columns <<<"$output"
	read -r cols words <<<"$output"
	[ "$cols" -eq "$words" ]
	run --separate-stderr whk-log show --format table "$K1"
	assert_success
	printf '%s\n' "$output" | grep -Eiq "^ *event:? +$K1 *\$"
	printf '%s\n' "$output" | grep -Fq "$W1"
	# The default on a terminal.
	assert_equal "$(on_tty whk-log show "$K1")" "$output"
}

# --- follow ----------------------------------------------------------------

# stop PID SIGNAL: send SIGNAL, wait up to 5 s for PID to end; its exit
# status in $stopped.
stop() {
	local i
	kill -"$2" "$1"
	for i in $(seq 100); do
		grep -qs '^State:[[:space:]]*[^Z]' "/proc/$1/status" || break
		sleep 0.05
	done
	if grep -qs '^State:[[:space:]]*[^Z]' "/proc/$1/status"; then
		kill -KILL "$1"
		echo "$1 did not stop on $2" >&2
	fi
	stopped=0
	wait "$1" || stopped=$?
}

# started PID...: wait up to 10 s until each PID has the store open, then
# a little more, for its first look at it.
started() {
	local pid i
	for pid in "$@"; do
		for i in $(seq 200); do
			ls -l "/proc/$pid/fd" 2>/dev/null | grep -q -- "-> $WHK_STORE\$" && break
			sleep 0.05
		done
	done
	sleep 0.3
}

# wait_lines FILE N: wait up to 10 s until FILE has N lines.
wait_lines() {
	local i
	for i in $(seq 200); do
		[ "$(wc -l <"$1")" -ge "$2" ] && return 0
		sleep 0.05
	done
	echo "$1 has $(wc -l <"$1") lines, not $2" >&2
	return 1
}

@test "follow (-f): each attempt as it is recorded, oldest first, none from before; --endpoint narrows; SIGINT or SIGTERM: exit 0" {
	receiver_start
	ep a /ok
	ep b /fail
	hooks a 1 | whk-deliver >/dev/null
	hooks b 1 | whk-deliver >/dev/null || true
	bg_log all -f
	all=$bgpid
	bg_log b follow --endpoint b
	bf=$bgpid
	bg_log tsv follow --format tsv
	tf=$bgpid
	started $all $bf $tf
	hooks a 1 | WHK_NOW=$((T0 + 1)) whk-deliver >d.out
	hooks b 1 | WHK_NOW=$((T0 + 2)) whk-deliver >>d.out || true
	hooks a 2 | WHK_NOW=$((T0 + 3)) whk-deliver >>d.out
	hooks b 1 | WHK_NOW=$((T0 + 4)) whk-deliver >>d.out || true
	[ "$(wc -l <d.out)" -eq 5 ]
	wait_lines all.out 5
	wait_lines b.out 2
	wait_lines tsv.out 6
	sleep 0.3
	stop $all INT
	assert_equal "$stopped" 0
	stop $bf TERM
	assert_equal "$stopped" 0
	stop $tf INT
	assert_equal "$stopped" 0
	assert_equal "$(cat all.err b.err tsv.err)" ""
	# Exactly the attempts made since, oldest first, as attempts lists them.
	run cat all.out
	assert_output "$(whk-log attempts -l 5 | tac)"
	jq -c '{webhook, endpoint, attempt, kind, status, ms, outcome, error}' all.out | sort >got
	sort d.out >want
	run diff got want
	assert_success
	run cat b.out
	assert_output "$(whk-log attempts --endpoint b -l 2 | tac)"
	run cat tsv.out
	assert_output "$(whk-log attempts -l 5 --format tsv | sed -n 1p)
$(whk-log attempts -l 5 --format tsv | sed 1d | tac)"
}

@test "follow with --jq: the filter applied to each attempt" {
	receiver_start
	ep a /ok
	bg_log f -f --jq '[.endpoint, .attempt, .outcome]'
	pid=$bgpid
	started $pid
	hooks a 2 | whk-deliver >/dev/null
	wait_lines f.out 2
	stop $pid INT
	assert_equal "$stopped" 0
	assert_equal "$(cat f.err)" ""
	run cat f.out
	assert_output $'["a",1,"delivered"]\n["a",1,"delivered"]'
}

# --- metrics ---------------------------------------------------------------
#
# Endpoints m (/ok), n (/fail-first?k=1), o (disabled, no webhooks).
#   m: two webhooks delivered at their first attempt; their first-attempt
#      and delivery latencies made 200 ms and 3 s.
#   n: one webhook failed, then delivered by its retry: first attempt
#      700 ms, delivered 45 s after its event; one webhook pending,
#      never attempted, whose event came 120 s before WHK_NOW (T0 + 600).
# The times are moved with SQL (first_event_at, delivered_at): an
# attempt's ms is the real network time.
lat_store() {
	cached lat
}

build_lat() {
	receiver_start >&2
	ep m /ok
	ep n '/fail-first?k=1'
	ep o /ok
	whk-endpoint disable o >/dev/null
	hooks m 2 >m.recs
	whk-deliver <m.recs >/dev/null
	hooks n 1 >n.recs
	whk-deliver <n.recs >/dev/null || true
	whk-retry >/dev/null
	WHK_NOW=$((T0 + 10)) whk-retry | WHK_NOW=$((T0 + 10)) whk-deliver >/dev/null
	WHK_NOW=$((T0 + 480)) hooks n 1 >n2.recs
	set_latency() {
		sql "UPDATE webhooks SET first_event_at = (SELECT a.started_at + a.ms
		    FROM attempts a WHERE a.webhook_seq = webhooks.seq AND a.n = 1) - $2
		    WHERE id = '$1'"
	}
	set_latency "$(sed -n 1p m.recs | jq -r .webhook)" 200
	set_latency "$(sed -n 2p m.recs | jq -r .webhook)" 3000
	N1=$(jq -r .webhook n.recs)
	set_latency "$N1" 700
	sql "UPDATE webhooks SET delivered_at = first_event_at + 45000 WHERE id = '$N1'"
	[ "$(sql "SELECT group_concat(state, ',') FROM
	    (SELECT state FROM webhooks ORDER BY seq)")" = \
	    "delivered,delivered,delivered,pending" ] || return 1
	printf 'export WHK_NOW=%d\n' $((T0 + 600))
}

@test "metrics: the exact exposition for a small known store; HELP and TYPE for each family; every endpoint in each family, 0 when none" {
	lat_store
	run --separate-stderr whk-log metrics
	assert_success
	[ -z "$stderr" ]
	metrics=$output
	for f in whk_attempts_total:counter whk_webhooks:gauge \
	    whk_pending_webhooks:gauge whk_oldest_pending_age_seconds:gauge \
	    whk_first_attempt_latency_seconds:histogram \
	    whk_delivery_latency_seconds:histogram whk_endpoint_enabled:gauge; do
		assert_line "# TYPE ${f%%:*} ${f#*:}"
		assert_line --regexp "^# HELP ${f%%:*} [^ ].*\$"
	done
	# (Seconds with three decimals: the contract leaves the form open.)
	run eval 'grep -v "^# HELP " <<<"$metrics"'
	assert_output "# TYPE whk_attempts_total counter
whk_attempts_total{endpoint=\"m\",outcome=\"delivered\"} 2
whk_attempts_total{endpoint=\"m\",outcome=\"failed\"} 0
whk_attempts_total{endpoint=\"n\",outcome=\"delivered\"} 1
whk_attempts_total{endpoint=\"n\",outcome=\"failed\"} 1
whk_attempts_total{endpoint=\"o\",outcome=\"delivered\"} 0
whk_attempts_total{endpoint=\"o\",outcome=\"failed\"} 0
# TYPE whk_webhooks gauge
whk_webhooks{endpoint=\"m\",state=\"pending\"} 0
whk_webhooks{endpoint=\"m\",state=\"failed\"} 0
whk_webhooks{endpoint=\"m\",state=\"delivered\"} 2
whk_webhooks{endpoint=\"m\",state=\"dead\"} 0
whk_webhooks{endpoint=\"n\",state=\"pending\"} 1
whk_webhooks{endpoint=\"n\",state=\"failed\"} 0
whk_webhooks{endpoint=\"n\",state=\"delivered\"} 1
whk_webhooks{endpoint=\"n\",state=\"dead\"} 0
whk_webhooks{endpoint=\"o\",state=\"pending\"} 0
whk_webhooks{endpoint=\"o\",state=\"failed\"} 0
whk_webhooks{endpoint=\"o\",state=\"delivered\"} 0
whk_webhooks{endpoint=\"o\",state=\"dead\"} 0
# TYPE whk_pending_webhooks gauge
whk_pending_webhooks{endpoint=\"m\"} 0
whk_pending_webhooks{endpoint=\"n\"} 1
whk_pending_webhooks{endpoint=\"o\"} 0
# TYPE whk_oldest_pending_age_seconds gauge
whk_oldest_pending_age_seconds{endpoint=\"m\"} 0.000
whk_oldest_pending_age_seconds{endpoint=\"n\"} 120.000
whk_oldest_pending_age_seconds{endpoint=\"o\"} 0.000
# TYPE whk_first_attempt_latency_seconds histogram
$(prom_hist whk_first_attempt_latency_seconds m 3.200 0 1 1 1 1 2 2 2 2 2 2 2 2)
$(prom_hist whk_first_attempt_latency_seconds n 0.700 0 0 0 1 1 1 1 1 1 1 1 1 1)
$(prom_hist whk_first_attempt_latency_seconds o 0.000 0 0 0 0 0 0 0 0 0 0 0 0 0)
# TYPE whk_delivery_latency_seconds histogram
$(prom_hist whk_delivery_latency_seconds m 3.200 0 1 1 1 1 2 2 2 2 2 2 2 2)
$(prom_hist whk_delivery_latency_seconds n 45.000 0 0 0 0 0 0 0 0 1 1 1 1 1)
$(prom_hist whk_delivery_latency_seconds o 0.000 0 0 0 0 0 0 0 0 0 0 0 0 0)
# TYPE whk_endpoint_enabled gauge
whk_endpoint_enabled{endpoint=\"m\"} 1
whk_endpoint_enabled{endpoint=\"n\"} 1
whk_endpoint_enabled{endpoint=\"o\"} 0"
}

# prom_hist NAME ENDPOINT SUM COUNT...: a histogram's lines for ENDPOINT,
# the 13 cumulative bucket counts given (the last, +Inf, is _count).
prom_hist() {
	local name=$1 ep=$2 sum=$3 i
	local le=(0.1 0.25 0.5 1 2.5 5 10 30 60 300 900 3600 +Inf)
	shift 3
	local c=("$@")
	for ((i = 0; i < 13; i++)); do
		printf '%s_bucket{endpoint="%s",le="%s"} %s\n' "$name" "$ep" \
		    "${le[i]}" "${c[i]}"
	done
	printf '%s_sum{endpoint="%s"} %s\n%s_count{endpoint="%s"} %s' \
	    "$name" "$ep" "$sum" "$name" "$ep" "${c[12]}"
}

@test "metrics: every histogram's buckets are cumulative, +Inf is _count; promtool check metrics passes (when installed)" {
	lat_store
	# More history: failures, a dead webhook, a resend.
	receiver_start
	whk-endpoint set m --url "$RECEIVER/ok" >/dev/null
	ep f /fail
	hooks f 3 | whk-deliver >/dev/null || true
	whk-retry --schedule 1s >/dev/null
	WHK_NOW=$((T0 + 620)) whk-retry --schedule 1s |
	    WHK_NOW=$((T0 + 620)) whk-deliver >/dev/null || true
	WHK_NOW=$((T0 + 620)) whk-retry --schedule 1s >/dev/null
	WHK_NOW=$((T0 + 630)) whk-retry --now "$(jq -r .webhook m.recs | head -n 1)" |
	    WHK_NOW=$((T0 + 630)) whk-deliver >/dev/null
	WHK_NOW=$((T0 + 700)) run --separate-stderr whk-log metrics
	assert_success
	printf '%s\n' "$output" >metrics.txt
	run py - metrics.txt <<-'EOF'
	import re, sys
	series = {}
	for line in open(sys.argv[1]):
	    m = re.match(r'^(whk_\w+)_bucket\{endpoint="([^"]*)",le="([^"]+)"\} (\S+)$', line)
	    if m:
	        series.setdefault((m[1], m[2]), []).append((m[3], float(m[4])))
	        continue
	    m = re.match(r'^(whk_\w+)_count\{endpoint="([^"]*)"\} (\S+)$', line)
	    if m:
	        series.setdefault((m[1], m[2]), []).append(("count", float(m[3])))
	bad = []
	les = ["0.1", "0.25", "0.5", "1", "2.5", "5", "10", "30", "60", "300", "900", "3600", "+Inf", "count"]
	for k, v in sorted(series.items()):
	    if [le for le, _ in v] != les:
	        bad.append("%s: buckets %s" % (k, [le for le, _ in v]))
	    counts = [c for _, c in v]
	    if counts != sorted(counts) or counts[-1] != counts[-2]:
	        bad.append("%s: not cumulative: %s" % (k, counts))
	print("\n".join(bad) if bad else "%d ok" % len(series))
	EOF
	assert_output "8 ok"
	assert_equal "$(grep -c '^whk_endpoint_enabled{' metrics.txt)" 4
	if ! command -v promtool >/dev/null; then
		skip "promtool is not installed"
	fi
	run promtool check metrics <metrics.txt
	assert_success
	assert_output ""
}

# --- slo -------------------------------------------------------------------
#
# WHK_NOW is T0 + 3600 when asked.  Endpoint s1 (/ok): events at
#   T0      delivered T0 + 60     met
#   T0+10   delivered T0 + 100    met
#   T0+20   delivered T0 + 200    met
#   T0+30   delivered T0 + 510    missed (8 min)
#   T0+1000 not delivered         missed (older than 5 min)
#   T0+3500 not delivered         undecided (100 s old)
# s2 (/ok): T0+100 delivered at T0+101, T0+200 at T0+230: both met.
# s3: nothing.
slo_store() {
	cached slo
}

build_slo() {
	receiver_start >&2
	ep s1 /ok
	ep s2 /ok
	ep s3 /ok
	at() {
		local t=$1 d=$2
		WHK_NOW=$t hooks "$3" 1 >rec.$t
		if [ -n "$d" ]; then
			WHK_NOW=$d whk-deliver <rec.$t >/dev/null
		fi
	}
	at $T0 $((T0 + 60)) s1
	at $((T0 + 10)) $((T0 + 100)) s1
	at $((T0 + 20)) $((T0 + 200)) s1
	at $((T0 + 30)) $((T0 + 510)) s1
	at $((T0 + 1000)) '' s1
	at $((T0 + 3500)) '' s1
	at $((T0 + 100)) $((T0 + 101)) s2
	at $((T0 + 200)) $((T0 + 230)) s2
	printf 'export WHK_NOW=%d\n' $((T0 + 3600))
}

@test "slo: met, missed and undecided per endpoint; exit 1 when a target is not met, 0 when all are" {
	slo_store
	run --separate-stderr whk-log slo
	assert_failure 1
	[ -z "$stderr" ]
	assert_output '{"endpoint":"s1","events":5,"met":3,"missed":2,"share":60,"target":99.9,"within_ms":300000,"ok":false}
{"endpoint":"s2","events":2,"met":2,"missed":0,"share":100,"target":99.9,"within_ms":300000,"ok":true}
{"endpoint":"s3","events":0,"met":0,"missed":0,"share":null,"target":99.9,"within_ms":300000,"ok":true}'
	run --separate-stderr whk-log slo --endpoint s2
	assert_success
	assert_output '{"endpoint":"s2","events":2,"met":2,"missed":0,"share":100,"target":99.9,"within_ms":300000,"ok":true}'
	run --separate-stderr whk-log slo --endpoint s3
	assert_success
	run --separate-stderr whk-log slo --target 60
	assert_success
	assert_line --index 0 '{"endpoint":"s1","events":5,"met":3,"missed":2,"share":60,"target":60,"within_ms":300000,"ok":true}'
	run --separate-stderr whk-log slo --target 60.5 --endpoint s1
	assert_failure 1
	assert_output '{"endpoint":"s1","events":5,"met":3,"missed":2,"share":60,"target":60.5,"within_ms":300000,"ok":false}'
	# A longer bound: the 8-minute one is met; still decided the same.
	run --separate-stderr whk-log slo --within 10m --endpoint s1
	assert_failure 1
	assert_output '{"endpoint":"s1","events":5,"met":4,"missed":1,"share":80,"target":99.9,"within_ms":600000,"ok":false}'
	run --separate-stderr whk-log slo --within 1h --target 80 --endpoint s1
	assert_success
	assert_output '{"endpoint":"s1","events":4,"met":4,"missed":0,"share":100,"target":80,"within_ms":3600000,"ok":true}'
	# --since: webhooks created since then.
	run --separate-stderr whk-log slo --since $((T0 + 25)) --endpoint s1
	assert_failure 1
	assert_output '{"endpoint":"s1","events":2,"met":0,"missed":2,"share":0,"target":99.9,"within_ms":300000,"ok":false}'
	run --separate-stderr whk-log slo --since 10m
	assert_success
	assert_output '{"endpoint":"s1","events":0,"met":0,"missed":0,"share":null,"target":99.9,"within_ms":300000,"ok":true}
{"endpoint":"s2","events":0,"met":0,"missed":0,"share":null,"target":99.9,"within_ms":300000,"ok":true}
{"endpoint":"s3","events":0,"met":0,"missed":0,"share":null,"target":99.9,"within_ms":300000,"ok":true}'
	# An hour later the undecided one is missed.
	WHK_NOW=$((T0 + 7200)) run --separate-stderr whk-log slo --endpoint s1
	assert_failure 1
	assert_output '{"endpoint":"s1","events":6,"met":3,"missed":3,"share":50,"target":99.9,"within_ms":300000,"ok":false}'
	# An unknown endpoint: nothing to judge.
	run --separate-stderr whk-log slo --endpoint nope
	assert_success
	assert_output ""
}

@test "slo: a table on a terminal, the exit status the same" {
	slo_store
	run on_tty whk-log slo
	assert_output "endpoint  events  met  missed  share   target  within_ms  ok
s1             5    3       2   60.00   99.90     300000  no
s2             2    2       0  100.00   99.90     300000  yes
s3             0    0       0       -   99.90     300000  yes"
	script -qec "whk-log slo" /dev/null </dev/null >/dev/null && st=0 || st=$?
	assert_equal "$st" 1
	script -qec "whk-log slo --endpoint s2" /dev/null </dev/null >/dev/null && st=0 || st=$?
	assert_equal "$st" 0
}

# --- stats -----------------------------------------------------------------

@test "stats: json per endpoint (attempts, delivered, failed, success, p50/p95, histogram); --endpoint, --since" {
	lat_store
	run --separate-stderr whk-log stats
	assert_success
	[ -z "$stderr" ]
	printf '%s\n' "$output" >stats.json
	run jq -c '{endpoint, attempts, delivered, failed, success, p50_ms, p95_ms}' stats.json
	assert_line '{"endpoint":"m","attempts":2,"delivered":2,"failed":0,"success":100,"p50_ms":200,"p95_ms":3000}'
	assert_line '{"endpoint":"n","attempts":2,"delivered":1,"failed":1,"success":50,"p50_ms":700,"p95_ms":700}'
	run jq -c '[.endpoint, [.histogram[] | .le_ms]]' stats.json
	assert_line '["m",[100,250,500,1000,2500,5000,10000,30000,60000,300000,900000,3600000,null]]'
	run jq -c 'select(.endpoint == "m") | .histogram | map(.count)' stats.json
	assert_output '[0,1,0,0,0,1,0,0,0,0,0,0,0]'
	run jq -c 'select(.endpoint == "n") | .histogram | map(.count)' stats.json
	assert_output '[0,0,0,1,0,0,0,0,0,0,0,0,0]'
	# Field order as the contract gives it.
	run jq -c 'select(.endpoint == "m") | keys_unsorted' stats.json
	assert_output '["endpoint","attempts","delivered","failed","success","p50_ms","p95_ms","histogram"]'
	# Exactly, with the share in two decimals (the contract leaves the
	# form open); the histogram counts each bucket's own, the last one
	# (le_ms null) what is over an hour.
	run --separate-stderr whk-log stats --endpoint n --format json
	assert_success
	assert_output "{\"endpoint\":\"n\",\"attempts\":2,\"delivered\":1,\"failed\":1,\"success\":50.00,\"p50_ms\":700,\"p95_ms\":700,\"histogram\":$(hist 0 0 0 1 0 0 0 0 0 0 0 0 0)}"
	run --separate-stderr whk-log stats --endpoint m
	assert_output "{\"endpoint\":\"m\",\"attempts\":2,\"delivered\":2,\"failed\":0,\"success\":100.00,\"p50_ms\":200,\"p95_ms\":3000,\"histogram\":$(hist 0 1 0 0 0 1 0 0 0 0 0 0 0)}"
	# An endpoint with no attempts: listed, nothing to measure.
	run --separate-stderr whk-log stats --endpoint o
	assert_success
	assert_output "{\"endpoint\":\"o\",\"attempts\":0,\"delivered\":0,\"failed\":0,\"success\":null,\"p50_ms\":null,\"p95_ms\":null,\"histogram\":$(hist 0 0 0 0 0 0 0 0 0 0 0 0 0)}"
	# --since: attempts started since then (n's retry at T0 + 10 only).
	run --separate-stderr whk-log stats --since $((T0 + 5)) --endpoint n
	assert_success
	run jq -c '{attempts, delivered, failed, success}' <<<"$output"
	assert_output '{"attempts":1,"delivered":1,"failed":0,"success":100}'
}

@test "stats --format table (and on a terminal): per endpoint, attempts, success and percentiles, latency bars" {
	lat_store
	run --separate-stderr whk-log stats --format table
	assert_success
	[ -z "$stderr" ]
	table=$output
	# Per endpoint a summary, then the first-attempt latencies in bars
	# (the largest count 40 wide).  m: one at 200 ms, one at 3 s.
	bar=$(printf '█%.0s' $(seq 40))
	assert_equal "$(sed -n 1,14p <<<"$table" | sed 's/ *$//')" "m: 2 attempts, 100.0% delivered; first attempts p50 200 ms, p95 3000 ms
    <= 0.1s        0
   <= 0.25s        1 $bar
    <= 0.5s        0
      <= 1s        0
    <= 2.5s        0
      <= 5s        1 $bar
     <= 10s        0
     <= 30s        0
     <= 60s        0
    <= 300s        0
    <= 900s        0
   <= 3600s        0
       more        0"
	assert_line "n: 2 attempts, 50.0% delivered; first attempts p50 700 ms, p95 700 ms"
	assert_line "      <= 1s        1 $bar"
	assert_line "o: 0 attempts, none delivered"
	assert_equal "$(grep -c '█' <<<"$table")" 3
	assert_equal "$(on_tty whk-log stats)" "$table"
}

# hist COUNT...: the histogram stats prints for these 13 counts.
hist() {
	local le=(100 250 500 1000 2500 5000 10000 30000 60000 300000 900000 3600000 null)
	local i out=
	for ((i = 0; i < 13; i++)); do
		out+="${out:+,}{\"le_ms\":${le[i]},\"count\":$(($1))}"
		shift
	done
	printf '[%s]' "$out"
}

# --- prune -----------------------------------------------------------------
#
# Endpoints a (/ok, tenant t), h (never sent: types keep.*, any tenant),
# f (/fail, tenant f).  At T0:
#   ea1  t          -> a delivered                           goes, and its event
#   ea2  t keep.me  -> a delivered, and h pending            a's goes; the event stays
#   ef1  f          -> f dead (2 attempts)                   goes, and its event
#   ef2  f          -> f failed (1 attempt)                  stays
#   en   nobody     -> routed to none                        its event goes
#   eu   t          ingested only, unrouted                  stays
#   eh   keep.it    -> h pending                             stays
# At T0 + 8d:  ea3 -> a delivered; en2 routed to none: both stay.
# Pruned at T0 + 10d, --before 7d: the bound is T0 + 3d.
prune_store() {
	cached prune
}

build_prune() {
	receiver_start >&2
	whk-endpoint add a "$RECEIVER/ok" --allow-private --tenant t >/dev/null
	whk-endpoint add h "$RECEIVER/ok" --allow-private --tenant '' \
	    --types 'keep.*' >/dev/null
	whk-endpoint add f "$RECEIVER/fail" --allow-private --tenant f >/dev/null
	put $T0 '{"id":"ea1","tenant":"t","type":"x"}' \
	    '{"id":"ea2","tenant":"t","type":"keep.me"}' \
	    '{"id":"ef1","tenant":"f","type":"x"}' >recs
	printf '%s\n' '{"id":"eu","tenant":"t","type":"x"}' | whk-ingest >/dev/null
	put $T0 '{"id":"en","tenant":"nobody","type":"x"}' \
	    '{"id":"eh","type":"keep.it"}' >/dev/null
	jq -c 'select(.endpoint != "h")' recs | whk-deliver >/dev/null || true
	whk-retry --schedule 1s >/dev/null
	WHK_NOW=$((T0 + 2)) whk-retry --schedule 1s |
	    WHK_NOW=$((T0 + 2)) whk-deliver >/dev/null || true
	WHK_NOW=$((T0 + 2)) whk-retry --schedule 1s >/dev/null
	WHK_NOW=$((T0 + 10)) put $((T0 + 10)) '{"id":"ef2","tenant":"f","type":"x"}' |
	    WHK_NOW=$((T0 + 10)) whk-deliver >/dev/null || true
	D8=$((T0 + 8 * 86400))
	put $D8 '{"id":"ea3","tenant":"t","type":"x"}' '{"id":"en2","tenant":"nobody"}' |
	    WHK_NOW=$D8 whk-deliver >/dev/null
	printf 'export WHK_NOW=%d\n' $((T0 + 10 * 86400))
	WHK_NOW=$((T0 + 10 * 86400))
	[ "$(sql "SELECT group_concat(k || ':' || s, ',') FROM (SELECT
	    (SELECT group_concat(e.key) FROM webhook_events x JOIN events e
	    ON e.seq = x.event_seq WHERE x.webhook_seq = w.seq) || '>' ||
	    p.name AS k, w.state AS s FROM webhooks w JOIN endpoints p
	    ON p.id = w.endpoint_id ORDER BY w.seq)")" = \
	    "ea1>a:delivered,ea2>a:delivered,ea2>h:pending,ef1>f:dead,eh>h:pending,ef2>f:failed,ea3>a:delivered" ] ||
	    { echo "prune_store: unexpected layout" >&2; sql "SELECT * FROM webhooks" >&2; return 1; }
}

# snapshot: what the store holds, as text.
snapshot() {
	sql "SELECT 'w', w.id, w.state, w.attempts FROM webhooks w ORDER BY seq;
	    SELECT 'a', id, webhook_seq, n FROM attempts ORDER BY seq;
	    SELECT 'x', event_seq, endpoint_id, webhook_seq FROM webhook_events
	    ORDER BY 2, 3;
	    SELECT 'e', key, id FROM events ORDER BY seq;
	    SELECT 'u', seq FROM unrouted ORDER BY seq"
}

@test "prune --dry-run: tells what would go, removes nothing" {
	prune_store
	snapshot >before
	run --separate-stderr whk-log prune --before 7d --dry-run
	assert_success
	[ -z "$stderr" ]
	record=$output
	run jq -c '{pruned, before}' <<<"$record"
	assert_output "{\"pruned\":{\"webhooks\":3,\"attempts\":4,\"events\":3},\"before\":\"$(iso $((T0 + 3 * 86400)))\"}"
	snapshot >after
	run diff before after
	assert_success
	run --separate-stderr whk-log prune --before 7d -n
	assert_success
	assert_equal "$output" "$record"
	snapshot >after
	run diff before after
	assert_success
	# The record is the contract's, no more.
	assert_equal "$record" "{\"pruned\":{\"webhooks\":3,\"attempts\":4,\"events\":3},\"before\":\"$(iso $((T0 + 3 * 86400)))\"}"
}

@test "prune --before: delivered and dead webhooks older than the bound, their attempts, pairs and orphaned routed events; never pending or failed work" {
	prune_store
	keep_w=$(sql "SELECT id FROM webhooks w WHERE NOT (state IN ('delivered', 'dead')
	    AND created_at < $(((T0 + 3 * 86400) * 1000))) ORDER BY seq")
	run --separate-stderr whk-log prune --before 7d
	assert_success
	[ -z "$stderr" ]
	# (The dry run's test holds the record's exact form.)
	run jq -c '{pruned, before}' <<<"$output"
	assert_output "{\"pruned\":{\"webhooks\":3,\"attempts\":4,\"events\":3},\"before\":\"$(iso $((T0 + 3 * 86400)))\"}"
	run sql "SELECT id FROM webhooks ORDER BY seq"
	assert_output "$keep_w"
	run sql "SELECT p.name || ':' || w.state FROM webhooks w JOIN endpoints p
	    ON p.id = w.endpoint_id ORDER BY w.seq"
	assert_output $'h:pending\nh:pending\nf:failed\na:delivered'
	# Attempts: only of what is left.
	run sql "SELECT w.state, a.n, a.outcome FROM attempts a JOIN webhooks w
	    ON w.seq = a.webhook_seq ORDER BY a.seq"
	assert_output $'failed|1|failed\ndelivered|1|delivered'
	run sql "SELECT count(*) FROM attempts WHERE webhook_seq NOT IN (SELECT seq FROM webhooks)"
	assert_output 0
	# Pairs: only of what is left, one each.
	run sql "SELECT e.key || '>' || p.name FROM webhook_events x
	    JOIN events e ON e.seq = x.event_seq JOIN endpoints p
	    ON p.id = x.endpoint_id ORDER BY x.webhook_seq"
	assert_output $'ea2>h\neh>h\nef2>f\nea3>a'
	# Events: those held, the unrouted one, the new one routed to none.
	run sql "SELECT coalesce(key, '?') FROM events ORDER BY seq"
	assert_output $'ea2\neu\neh\nef2\nea3\nen2'
	run sql "SELECT key FROM events WHERE seq IN (SELECT seq FROM unrouted)"
	assert_output eu
	run sql "PRAGMA integrity_check"
	assert_output ok
	# whk-log agrees, and the pending work is still deliverable, bodies whole.
	run whk-log webhooks --jq '[.endpoint, .state]'
	assert_output $'["a","delivered"]\n["f","failed"]\n["h","pending"]\n["h","pending"]'
	# (In any order: the endpoints test holds the order.)
	run eval "whk-log endpoints --jq '[.endpoint, .pending, .failed, .delivered, .dead]' | sort"
	assert_output $'["a",0,0,1,0]\n["f",0,1,0,0]\n["h",2,0,0,0]'
	# Again: nothing more to go.  A bound before everything: nothing.
	run --separate-stderr whk-log prune --before 7d
	assert_success
	run jq -c '{pruned, before}' <<<"$output"
	assert_output "{\"pruned\":{\"webhooks\":0,\"attempts\":0,\"events\":0},\"before\":\"$(iso $((T0 + 3 * 86400)))\"}"
	run --separate-stderr whk-log prune --before 30d
	run jq -c '{pruned, before}' <<<"$output"
	assert_output "{\"pruned\":{\"webhooks\":0,\"attempts\":0,\"events\":0},\"before\":\"$(iso $((T0 - 20 * 86400)))\"}"
	# The pending work is still deliverable, its bodies whole.
	receiver_start
	whk-endpoint set h --url "$RECEIVER/ok" >/dev/null
	run --separate-stderr whk-deliver --pending </dev/null
	assert_success
	[ "${#lines[@]}" -eq 2 ]
	run eval 'received | jq -r .body | sort'
	assert_output '{"id":"ea2","tenant":"t","type":"keep.me"}
{"id":"eh","type":"keep.it"}'
	# Delivered now, and made before the bound: they go, and their events.
	run --separate-stderr whk-log prune --before 7d
	run jq -c '.pruned' <<<"$output"
	assert_output '{"webhooks":2,"attempts":2,"events":2}'
	# A bound after everything: the rest of what is done; never the failed.
	WHK_NOW=$((T0 + 40 * 86400)) run --separate-stderr whk-log prune --before 1d
	assert_success
	run jq -c '.pruned' <<<"$output"
	assert_output '{"webhooks":1,"attempts":1,"events":2}'
	run sql "SELECT p.name || ':' || w.state FROM webhooks w JOIN endpoints p
	    ON p.id = w.endpoint_id ORDER BY w.seq"
	assert_output "f:failed"
	run sql "SELECT count(*) FROM attempts"
	assert_output 1
	run sql "SELECT coalesce(key, '?') FROM events ORDER BY seq"
	assert_output $'eu\nef2'
}

@test "prune: --before is required, a duration" {
	prune_store
	snapshot >before
	for args in "" "--dry-run" "--before" "--before soon" "--before -1d" \
	    "--before 7" "--before 7d extra"; do
		run --separate-stderr whk-log prune $args
		assert_failure 2
		assert_output ""
		assert_regex "$stderr" '^whk-log: '
	done
	run --separate-stderr whk-log prune --dry-run
	assert_equal "$stderr" "whk-log: prune needs --before (such as --before 90d)"
	snapshot >after
	run diff before after
	assert_success
}

# --- secrets ---------------------------------------------------------------

@test "secrets never shown: no endpoint secret (current or old) nor header value in any output of any command" {
	std_store
	OLD=$SECRET
	NEW=$(secret_of)
	receiver_start
	whk-endpoint set ok --url "$RECEIVER/ok" >/dev/null
	whk-endpoint rotate-secret ok --secret "$NEW" --grace 1h >/dev/null
	whk-endpoint set bad --header "Authorization: Bearer tok-5ecr3t-value" >/dev/null
	hooks acme 1 | whk-deliver >/dev/null
	[ "$(received | jq -r '.headers["x-api-key"]' | sort -u | grep -c "$HEADER_VALUE")" -eq 1 ]
	: >all.out
	for l in events webhooks attempts endpoints; do
		for f in json tsv table; do
			whk-log $l --format $f >>all.out 2>&1
		done
		whk-log $l --jq . >>all.out 2>&1
		on_tty whk-log $l >>all.out 2>&1
	done
	for id in "$W1" "$W2" "$K1"; do
		whk-log show "$id" >>all.out 2>&1
		whk-log show --format table "$id" >>all.out 2>&1
	done
	whk-log metrics >>all.out 2>&1
	whk-log slo >>all.out 2>&1 || true
	on_tty whk-log slo >>all.out 2>&1
	whk-log stats >>all.out 2>&1
	whk-log stats --format table >>all.out 2>&1
	whk-log prune --before 1d --dry-run >>all.out 2>&1
	whk-log endpoints --endpoint ok --jq 'tostring' >>all.out 2>&1
	whk-log --help >>all.out 2>&1
	bg_log follow -f
	pid=$bgpid
	started $pid
	hooks acme 1 | whk-deliver >/dev/null
	wait_lines follow.out 1
	stop $pid INT
	cat follow.out follow.err >>all.out
	[ "$(wc -l <all.out)" -gt 50 ]
	for s in "$OLD" "${OLD#whsec_}" "$NEW" "${NEW#whsec_}" "$HEADER_VALUE" \
	    tok-5ecr3t-value; do
		run grep -cF -- "$s" all.out
		assert_output 0
	done
}

# --- hostile filter values -------------------------------------------------

@test "hostile filter values (quotes, SQL, LIKE wildcards, jq): an empty answer or a clear error; the store intact" {
	std_store
	printf '%s\n' '{"id":"it'"'"'s \"q\" 100%_x","tenant":"acme","type":"we%ird_t"}' |
	    WHK_NOW=$((T0 + 350)) whk-ingest >/dev/null
	snap() {
		sql "PRAGMA integrity_check; SELECT type, name FROM sqlite_master
		    ORDER BY 1, 2; SELECT count(*) FROM events;
		    SELECT count(*) FROM webhooks; SELECT count(*) FROM attempts;
		    SELECT count(*) FROM endpoints"
	}
	snap >before
	for v in "'" "'; DROP TABLE webhooks; --" '%' '.[] | .x'; do
		for a in "events --endpoint" "events --tenant" "events --type" \
		    "events --key" "webhooks --event" "attempts --webhook" \
		    "webhooks --key" "endpoints --endpoint"; do
			run --separate-stderr whk-log $a "$v"
			if [ "$status" -eq 0 ]; then
				assert_output ""
			else
				assert_failure 2
				assert_regex "$stderr" '^whk-log: '
			fi
		done
		run --separate-stderr whk-log webhooks --status "$v"
		assert_failure 2
		assert_output ""
		assert_equal "$stderr" "whk-log: --status: '$v' is not a state of webhooks (pending failed delivered dead)"
		run --separate-stderr whk-log show "$v"
		assert_failure 1
		assert_output ""
	done
	for v in "x' OR '1'='1" '_k' '$(touch pwned)' '"'; do
		for a in "events --key" "webhooks --endpoint"; do
			run --separate-stderr whk-log $a "$v"
			assert_success
			assert_output ""
		done
	done
	# LIKE's wildcards are plain characters: none of these is a value.
	for a in "events --endpoint o_" "events --tenant %cme" "events --tenant acm_" \
	    "events --type order_created" "events --type order.%" \
	    "webhooks --endpoint b%" "attempts --endpoint _ad" "events --key k%" \
	    "webhooks --webhook msg_%" "slo --endpoint o%"; do
		run --separate-stderr whk-log $a
		assert_success
		assert_output ""
	done
	for v in "'; DROP TABLE webhooks; --"; do
		for o in --since --until --limit; do
			run --separate-stderr whk-log webhooks $o "$v"
			assert_failure 2
			assert_output ""
		done
		run --separate-stderr whk-log prune --before "$v"
		assert_failure 2
	done
	[ ! -e pwned ]
	snap >after
	run diff before after
	assert_success
	# Values with quotes and wildcards are found when they are the value.
	run whk-log events --key "it's \"q\" 100%_x" --jq .key
	assert_output '"it'"'"'s \"q\" 100%_x"'
	run whk-log events --type 'we%ird_t' --jq .key
	assert_output '"it'"'"'s \"q\" 100%_x"'
	run whk-log events --key "it's \"q\" 100%"
	assert_output ""
	run whk-log events --type 'we_ird%t'
	assert_output ""
}

# --- pipes -----------------------------------------------------------------

@test "resend: whk-log webhooks --status dead --endpoint E | whk-retry --now | whk-deliver sends E's dead webhooks again, only them" {
	receiver_start
	ep e /fail
	ep o /fail
	hooks e 2 >e.recs
	hooks o 1 >o.recs
	cat e.recs o.recs | whk-deliver >/dev/null || true
	whk-retry --schedule 1s >/dev/null
	WHK_NOW=$((T0 + 2)) whk-retry --schedule 1s |
	    WHK_NOW=$((T0 + 2)) whk-deliver >/dev/null || true
	WHK_NOW=$((T0 + 2)) whk-retry --schedule 1s >/dev/null
	# E fixed; also one delivered webhook and one failed, not to be resent.
	whk-endpoint set e --url "$RECEIVER/ok" >/dev/null
	whk-endpoint set o --url "$RECEIVER/ok" >/dev/null
	WHK_NOW=$((T0 + 5)) hooks e 1 | WHK_NOW=$((T0 + 5)) whk-deliver >/dev/null
	whk-endpoint set e --url "$RECEIVER/fail" >/dev/null
	WHK_NOW=$((T0 + 6)) hooks e 1 | WHK_NOW=$((T0 + 6)) whk-deliver >/dev/null || true
	whk-endpoint set e --url "$RECEIVER/ok" >/dev/null
	run whk-log webhooks --endpoint e --jq .state
	assert_output $'"failed"\n"delivered"\n"dead"\n"dead"'
	n=$(received | wc -l)
	export WHK_NOW=$((T0 + 60))
	run --separate-stderr eval 'whk-log webhooks --status dead --endpoint e | whk-retry --now | whk-deliver'
	assert_success
	[ -z "$stderr" ]
	[ "${#lines[@]}" -eq 2 ]
	for l in "${lines[@]}"; do
		like "$l" '{"webhook":"@MSG@","endpoint":"e","attempt":3,"kind":"resend","status":200,"ms":@N@,"outcome":"delivered","error":null}'
	done
	jq -r .webhook <<<"$output" | sort >resent
	jq -r .webhook e.recs | sort >want
	run diff resent want
	assert_success
	assert_equal "$(received | tail -n +$((n + 1)) | jq -r .id | sort)" "$(cat want)"
	run whk-log webhooks --jq '[.endpoint, .state]'
	assert_output '["e","failed"]
["e","delivered"]
["o","dead"]
["e","delivered"]
["e","delivered"]'
	# Nothing left to resend.
	run --separate-stderr eval 'whk-log webhooks --status dead --endpoint e | whk-retry --now | whk-deliver'
	assert_success
	assert_output ""
}

# --- the store -------------------------------------------------------------

@test "a store locked past the busy timeout: exit 3, nothing changed; a writer's lock does not stop the readers" {
	std_store
	snapshot >before
	sqlite3 "$WHK_STORE" "BEGIN EXCLUSIVE" ".system touch locked" ".system sleep 5" 3>&- &
	locker=$!
	for i in $(seq 100); do [ -e locked ] && break; sleep 0.05; done
	WHK_BUSY_TIMEOUT=200ms run --separate-stderr whk-log prune --before 1m
	assert_failure 3
	assert_output ""
	assert_equal "$stderr" "whk-log: store '$WHK_STORE' is locked by another process (waited 200ms)"
	# WAL: readers read what was committed, while a writer holds its lock.
	WHK_BUSY_TIMEOUT=200ms run --separate-stderr whk-log endpoints
	assert_success
	assert_output "$(std_endpoints)"
	kill "$locker"
	wait "$locker" || true
	# A lock that keeps readers out too (exclusive locking mode).
	rm -f locked
	sqlite3 "$WHK_STORE" "PRAGMA locking_mode = EXCLUSIVE" "BEGIN EXCLUSIVE" \
	    "SELECT count(*) FROM webhooks" ".system touch locked" \
	    ".system sleep 5" >/dev/null 3>&- &
	locker=$!
	for i in $(seq 100); do [ -e locked ] && break; sleep 0.05; done
	for args in events webhooks attempts endpoints "show $W1" metrics slo \
	    stats "prune --before 1m"; do
		WHK_BUSY_TIMEOUT=100ms run --separate-stderr whk-log $args
		assert_failure 3
		assert_output ""
		assert_equal "$stderr" "whk-log: store '$WHK_STORE' is locked by another process (waited 100ms)"
	done
	kill "$locker"
	wait "$locker" || true
	snapshot >after
	run diff before after
	assert_success
	run --separate-stderr whk-log endpoints
	assert_success
	assert_output "$(std_endpoints)"
}

@test "two whk-log processes at once, beside a deliverer writing: both succeed, every answer whole" {
	receiver_start
	ep a '/slow?ms=40' --concurrency 4
	hooks a 40 >recs
	whk-deliver <recs >d.out 2>d.err 3>&- &
	dp=$!
	reader() {
		local i
		for i in $(seq 12); do
			whk-log attempts >>"$1.out" 2>>"$1.err" || echo "attempts: exit $?" >>"$1.err"
			whk-log webhooks --status delivered --jq .webhook >>"$1.ids" 2>>"$1.err" ||
			    echo "webhooks: exit $?" >>"$1.err"
			whk-log metrics >/dev/null 2>>"$1.err" || echo "metrics: exit $?" >>"$1.err"
			whk-log endpoints --format tsv >/dev/null 2>>"$1.err" || echo "endpoints: exit $?" >>"$1.err"
		done
	}
	reader r1 3>&- &
	p1=$!
	reader r2 3>&- &
	p2=$!
	s=0
	wait $p1 || s=$?
	wait $p2 || s=$?
	wait $dp || s=$?
	assert_equal "$s" 0
	assert_equal "$(cat r1.err r2.err d.err)" ""
	# Every line a whole record; the deliverer's work seen as it went.
	run jq -c 'select(has("webhook") and has("id") | not)' r1.out r2.out
	assert_output ""
	[ "$(cat r1.ids r2.ids | wc -l)" -gt 0 ]
	run whk-log attempts --jq .outcome
	[ "${#lines[@]}" -eq 40 ]
	assert_equal "$(sort -u <<<"$output")" '"delivered"'
}
