#!/usr/bin/env bats
# whk-retry: the slow lane.  What is due and when (the schedule, its
# jitter, Retry-After), hand-outs, expired leases, the circuit breaker,
# auto-disable and resends.  WHK_NOW walks a week in a second: every test
# starts at $T0 and moves the clock of each command it runs.

load helpers

bats_require_minimum_version 1.5.0

# 2026-11-23T10:00:00Z, the clock every test starts from.
T0=1795428000

# The default schedule, in ms: the wait after failed attempt n is step n.
DEFAULT_STEPS=(5000 60000 300000 1800000 7200000 18000000 36000000 50400000
    86400000 86400000 86400000 86400000 86400000 86400000)

LOST="unknown outcome: the deliverer that claimed it stopped before recording the attempt (its lease ran out)"

setup() {
	cd "$BATS_TEST_TMPDIR" || return 1
	export WHK_STORE="$BATS_TEST_TMPDIR/whk.db"
	unset WHK_BUSY_TIMEOUT XDG_DATA_HOME
	export WHK_NOW=$T0
}

# --- helpers of this suite -------------------------------------------------

# isoms MS: the time in ms as whk prints it.
isoms() {
	printf '%s.%03dZ' "$(date -u -d "@$(($1 / 1000))" +%Y-%m-%dT%H:%M:%S)" \
	    $(($1 % 1000))
}

# secs MS: the time in Unix seconds, to the ms (a WHK_NOW).
secs() {
	printf '%d.%03d' $(($1 / 1000)) $(($1 % 1000))
}

# emitted ID ENDPOINT REASON ATTEMPTS DUE_MS: the line whk-retry prints.
emitted() {
	printf '{"webhook":"%s","endpoint":"%s","reason":"%s","attempts":%d,"due_at":"%s"}' \
	    "$1" "$2" "$3" "$4" "$(isoms "$5")"
}

# retry TIME [ARGS...]: run whk-retry ARGS at WHK_NOW=TIME, stdin not read
# (/dev/null); $output, $lines, $stderr and $status as run sets them.
retry() {
	local t=$1
	shift
	WHK_NOW=$t run --separate-stderr whk-retry "$@" </dev/null
}

# cycle TIME [ARGS...]: what cron runs, at WHK_NOW=TIME:
# whk-retry ARGS | whk-deliver.  whk-retry's lines in retry.out (stderr in
# retry.err, status in $rs); whk-deliver's in deliver.out (deliver.err,
# $ds).
cycle() {
	local t=$1
	shift
	{
		WHK_NOW=$t whk-retry "$@" </dev/null 2>retry.err | tee retry.out |
		    WHK_NOW=$t whk-deliver >deliver.out 2>deliver.err
		rs=${PIPESTATUS[0]} ds=${PIPESTATUS[2]}
	} || true
}

# next_of ID: the webhook's next_at (ms), empty when NULL.
next_of() {
	sql "SELECT next_at FROM webhooks WHERE id = '$1'"
}

# attempts_of NAME: endpoint NAME's attempts, oldest first, as
# "n|kind|status|outcome|error".
attempts_of() {
	sql "SELECT a.n, a.kind, a.status, a.outcome, a.error FROM attempts a
	    JOIN endpoints e ON e.id = a.endpoint_id WHERE e.name = '$1'
	    ORDER BY a.seq"
}

# states: "state|count" of every webhook, by state.
states() {
	sql "SELECT state, count(*) FROM webhooks GROUP BY 1 ORDER BY 1"
}

# within WAIT STEP: WAIT (ms) is STEP (ms) +-20%.
within() {
	if [ "$1" -lt $(($2 - $2 / 5)) ] || [ "$1" -gt $(($2 + $2 / 5)) ]; then
		echo "a wait of $1 ms is not within 20% of $2 ms" >&2
		return 1
	fi
}

# walk [ARGS...]: from $T0, until no webhook is failed with a time to come:
# whk-retry ARGS (which schedules what failed), then at the earliest
# next_at, whk-retry ARGS | whk-deliver.  Appends to waits each retry
# scheduled ("ENDPOINT ATTEMPTS WAIT_MS", WAIT from the last attempt's
# start), to emitted what whk-retry printed, to delivered what whk-deliver
# printed.
walk() {
	local t=$T0 next i
	: >waits
	: >emitted
	: >delivered
	for i in $(seq 200); do
		WHK_NOW=$t whk-retry "$@" </dev/null >>emitted ||
		    { echo "whk-retry at $t: exit $?" >&2; return 1; }
		sql "SELECT e.name, w.attempts, w.next_at - w.last_attempt_at
		    FROM webhooks w JOIN endpoints e ON e.id = w.endpoint_id
		    WHERE w.state = 'failed' AND w.next_at IS NOT NULL" |
		    tr '|' ' ' >>waits
		next=$(sql "SELECT min(next_at) FROM webhooks WHERE state = 'failed'")
		[ -n "$next" ] || break
		t=$(secs "$next")
		{
			WHK_NOW=$t whk-retry "$@" </dev/null | tee -a emitted |
			    WHK_NOW=$t whk-deliver >>delivered
		} || true
	done
	sort -u -k1,1 -k2,2n waits -o waits
}

# waits_of NAME: the waits endpoint NAME's retries were scheduled with.
waits_of() {
	awk -v e="$1" '$1 == e { print $3 }' waits
}

# sigcheck SECRET: for the receiver's log on stdin, recompute each
# request's Standard Webhooks signature with Python's hmac (not our code).
# Prints "N ok", or the misfits.
sigcheck() {
	py -c '
import base64, hashlib, hmac, json, sys
key = base64.b64decode(sys.argv[1][len("whsec_"):], validate=True)
n, bad = 0, []
for line in sys.stdin:
    r = json.loads(line)
    signed = ("%s.%s." % (r["id"], r["timestamp"])).encode() + r["body"].encode()
    want = "v1," + base64.b64encode(hmac.new(key, signed,
        hashlib.sha256).digest()).decode()
    if r["signature"] == want:
        n += 1
    else:
        bad.append("%s: got %r, want %r" % (r["id"], r["signature"], want))
print("\n".join(bad) if bad else "%d ok" % n)' "$@"
}

# --- interface -------------------------------------------------------------

@test "--help prints the usage on stdout and exits 0; -V prints the version; no store is made" {
	run --separate-stderr whk-retry --help
	assert_success
	assert_line --index 0 "usage: whk-retry [-s store] [--schedule list] [--trip-after n]"
	assert_line --index 1 "                 [--disable-after duration] [--limit n] [--dry-run] [-qv]"
	assert_line --index 2 "       whk-retry --now [-s store] [--endpoint name] [--status state]"
	# (The rest of the --now form may wrap anywhere.)
	run eval 'whk-retry --help | sed "/^\$/q" | tr -s " \n" " "'
	assert_output "usage: whk-retry [-s store] [--schedule list] [--trip-after n] [--disable-after duration] [--limit n] [--dry-run] [-qv] whk-retry --now [-s store] [--endpoint name] [--status state] [--since time] [--until time] [--limit n] [--dry-run] [-qv] [id ...] "
	run --separate-stderr whk-retry --help
	for o in --store --schedule --trip-after --disable-after --limit \
	    --dry-run --now --endpoint --status --since --until --quiet \
	    --verbose --help --version; do
		assert_output --partial -- "$o"
	done
	[ -z "$stderr" ]
	help=$output
	run --separate-stderr whk-retry -h
	assert_success
	assert_output "$help"
	run --separate-stderr whk-retry -V
	assert_success
	assert_output --regexp '^whk-retry [0-9]+\.[0-9]+\.[0-9]+$'
	assert_equal "${output#whk-retry }" "$(whk-deliver -V | sed 's/^whk-deliver //')"
	[ -z "$stderr" ]
	[ ! -e "$WHK_STORE" ]
}

@test "bad options and values: exit 2 with a clear message, nothing scheduled or emitted" {
	receiver_start
	ep f /fail
	hooks f 1 >recs
	run whk-deliver <recs
	assert_failure 1
	t=$((T0 + 10))
	retry $t --bogus
	assert_failure 2
	assert_output ""
	assert_equal "${stderr%%$'\n'*}" "whk-retry: unrecognized option '--bogus'"
	assert_regex "$stderr" $'\nusage: whk-retry '
	retry $t --limit 0
	assert_failure 2
	assert_equal "$stderr" "whk-retry: --limit: invalid number '0' (expected 1 to 9223372036854775807)"
	retry $t --limit ten
	assert_failure 2
	assert_equal "$stderr" "whk-retry: --limit: invalid number 'ten' (expected 1 to 9223372036854775807)"
	retry $t --trip-after 0
	assert_failure 2
	assert_equal "$stderr" "whk-retry: --trip-after: invalid number '0' (expected 1 to 1000)"
	retry $t --trip-after five
	assert_failure 2
	assert_equal "$stderr" "whk-retry: --trip-after: invalid number 'five' (expected 1 to 1000)"
	retry $t --disable-after soon
	assert_failure 2
	assert_equal "$stderr" "whk-retry: --disable-after: invalid duration 'soon' (use 500ms, 5s, 10m, 2h, 7d)"
	retry $t --disable-after ''
	assert_failure 2
	assert_equal "$stderr" "whk-retry: --disable-after: invalid duration '' (use 500ms, 5s, 10m, 2h, 7d)"
	retry $t "$(jq -r .webhook recs)"
	assert_failure 2
	assert_equal "${stderr%%$'\n'*}" "whk-retry: unexpected argument '$(jq -r .webhook recs)' (ids need --now)"
	WHK_NOW=yesterday run --separate-stderr whk-retry </dev/null
	assert_failure 2
	assert_equal "$stderr" "whk-retry: invalid WHK_NOW 'yesterday' (use Unix seconds or RFC 3339)"
	WHK_BUSY_TIMEOUT=forever retry $t
	assert_failure 2
	assert_equal "$stderr" "whk-retry: WHK_BUSY_TIMEOUT: invalid duration 'forever' (use 500ms, 5s, 10m, 2h, 7d)"
	retry $t --now --status lost
	assert_failure 2
	assert_equal "$stderr" "whk-retry: --status: 'lost' is not a state (pending, failed, delivered, dead)"
	retry $t --now --since whenever
	assert_failure 2
	assert_equal "$stderr" "whk-retry: --since: 'whenever' is not a time (Unix seconds, RFC 3339, or a duration ago such as 1h)"
	retry $t --now --until whenever
	assert_failure 2
	assert_equal "$stderr" "whk-retry: --until: 'whenever' is not a time (Unix seconds, RFC 3339, or a duration ago such as 1h)"
	# Nothing was scheduled, handed out or sent.
	run sql "SELECT state, attempts, next_at IS NULL, resend FROM webhooks"
	assert_output "failed|1|1|0"
	assert_equal "$(received | wc -l)" 1
	retry $t
	assert_success
	like "$output" "{\"webhook\":\"$(jq -r .webhook recs)\",\"endpoint\":\"f\",\"reason\":\"retry\",\"attempts\":1,\"due_at\":\"@TS@\"}"
}

@test "bad --schedule lists: exit 2, 'whk-retry: --schedule: reason'; the limits themselves are accepted" {
	bad() {
		retry $T0 --schedule "$1"
		assert_failure 2
		assert_output ""
		assert_equal "$stderr" "whk-retry: --schedule: $2"
	}
	bad '' "empty schedule"
	bad '5s,,1m' "an empty step"
	bad '5s,' "an empty step"
	bad '5x' "invalid duration '5x' (use 500ms, 5s, 10m, 2h, 7d)"
	bad '5s;1m' "invalid duration '5s;1m' (use 500ms, 5s, 10m, 2h, 7d)"
	bad '500ms' "step '500ms' is out of range (1s to 30d)"
	bad '1m,31d' "step '31d' is out of range (1s to 30d)"
	bad '1m*0' "'0': the repeat after '*' must be 1 to 1000"
	bad '1m*1001' "'1001': the repeat after '*' must be 1 to 1000"
	bad '1m*x' "'x': the repeat after '*' must be 1 to 1000"
	bad '1s*1000,1s' "more than 1000 steps"
	[ ! -e "$WHK_STORE" ] || [ "$(sql 'SELECT count(*) FROM webhooks')" = 0 ]
	for ok in 1s 30d '1s*1000' '5s,1m*3,2h'; do
		retry $T0 --schedule "$ok"
		assert_success
		assert_output ""
		[ -z "$stderr" ]
	done
	# An endpoint's own schedule is checked alike.
	run --separate-stderr whk-endpoint add x https://example.com/ --schedule 500ms
	assert_failure 2
	run --separate-stderr whk-endpoint add x https://example.com/ --schedule '10s*3,1h'
	assert_success
	assert_equal "$(jq -r .schedule <<<"$output")" '10s*3,1h'
}

# --- the schedule ----------------------------------------------------------

@test "a receiver failing the first 3 attempts: retried 5s, 1m and 5m (+-20%) after, each emitted only once due, delivered at attempt 4; nothing more all week" {
	receiver_start
	ep f '/fail-first?k=3'
	hooks f 1 >recs
	id=$(jq -r .webhook recs)
	run whk-deliver <recs
	assert_failure 1
	like "$output" "{\"webhook\":\"$id\",\"endpoint\":\"f\",\"attempt\":1,\"kind\":\"first\",\"status\":500,\"ms\":@N@,\"outcome\":\"failed\",\"error\":\"HTTP 500\"}"
	run sql "SELECT state, attempts, next_at IS NULL FROM webhooks"
	assert_output "failed|1|1"
	t=$T0 tm=$((T0 * 1000))
	for n in 1 2 3; do
		# The run after the failure schedules it; not due yet.
		retry "$t"
		assert_success
		assert_output ""
		[ -z "$stderr" ]
		due=$(next_of "$id")
		run sql "SELECT last_attempt_at FROM webhooks"
		assert_output "$tm"
		within $((due - tm)) "${DEFAULT_STEPS[n - 1]}"
		# Scheduled once: the same run again changes nothing.
		retry "$t"
		assert_success
		assert_output ""
		assert_equal "$(next_of "$id")" "$due"
		# A millisecond before it is due: nothing.
		cycle "$(secs $((due - 1)))"
		assert_equal "$rs/$ds" "0/0"
		assert_equal "$(cat retry.out deliver.out retry.err deliver.err)" ""
		assert_equal "$(received | wc -l)" "$n"
		# When it is due: emitted, and whk-deliver makes attempt n + 1.
		t=$(secs "$due") tm=$due
		cycle "$t"
		assert_equal "$(cat retry.out)" "$(emitted "$id" f retry "$n" "$due")"
		assert_equal "$(cat retry.err deliver.err)" ""
		if [ "$n" -lt 3 ]; then
			assert_equal "$rs/$ds" "0/1"
			like "$(cat deliver.out)" "{\"webhook\":\"$id\",\"endpoint\":\"f\",\"attempt\":$((n + 1)),\"kind\":\"retry\",\"status\":500,\"ms\":@N@,\"outcome\":\"failed\",\"error\":\"HTTP 500\"}"
		else
			assert_equal "$rs/$ds" "0/0"
			like "$(cat deliver.out)" "{\"webhook\":\"$id\",\"endpoint\":\"f\",\"attempt\":4,\"kind\":\"retry\",\"status\":200,\"ms\":@N@,\"outcome\":\"delivered\",\"error\":null}"
		fi
	done
	run attempts_of f
	assert_output $'1|first|500|failed|HTTP 500\n2|retry|500|failed|HTTP 500\n3|retry|500|failed|HTTP 500\n4|retry|200|delivered|'
	# The gaps between the attempts, by the store's clock.
	run sql "SELECT b.started_at - a.started_at FROM attempts a
	    JOIN attempts b ON b.webhook_seq = a.webhook_seq AND b.n = a.n + 1
	    ORDER BY a.n"
	[ "${#lines[@]}" -eq 3 ]
	for n in 0 1 2; do
		within "${lines[n]}" "${DEFAULT_STEPS[n]}"
	done
	# The rest of the week: nothing.
	for d in 1 2 3 4 5 6 7; do
		cycle $((T0 + d * 86400))
		assert_equal "$rs/$ds" "0/0"
		assert_equal "$(cat retry.out deliver.out)" ""
	done
	run sql "SELECT state, attempts, next_at IS NULL, lease_until IS NULL FROM webhooks"
	assert_output "delivered|4|1|1"
	assert_equal "$(received | wc -l)" 4
	run eval 'received | jq -r "[.id, .attempt, .status] | @tsv"'
	assert_output "$id	1	500
$id	2	500
$id	3	500
$id	4	200"
}

@test "an always-failing receiver: 15 attempts on the default schedule (+-20% each), then dead and never emitted again" {
	receiver_start
	ep f /fail
	hooks f 1 >recs
	id=$(jq -r .webhook recs)
	run whk-deliver <recs
	assert_failure 1
	# (Not disabled meanwhile: the schedule takes about a week.)
	walk --disable-after 30d
	run waits_of f
	[ "${#lines[@]}" -eq 14 ]
	for n in $(seq 0 13); do
		within "${lines[n]}" "${DEFAULT_STEPS[n]}"
	done
	run jq -r '[.attempt, .kind, .status, .outcome] | @tsv' delivered
	assert_output "$(for n in $(seq 2 15); do printf '%d\tretry\t500\tfailed\n' "$n"; done)"
	# Each retry was emitted once; after 5 failures in a row, as a probe.
	run jq -r '[.webhook, .reason, .attempts] | @tsv' emitted
	assert_output "$(for n in $(seq 1 14); do
		r=retry
		[ "$n" -ge 5 ] && r=probe
		printf '%s\t%s\t%d\n' "$id" "$r" "$n"
	done)"
	run sql "SELECT state, attempts, next_at IS NULL, lease_until IS NULL FROM webhooks"
	assert_output "dead|15|1|1"
	run sql "SELECT (max(started_at) - min(started_at)) / 86400000 FROM attempts"
	echo "first to last attempt: $output days"
	[ "$output" -ge 5 ] && [ "$output" -le 9 ]
	retry $((T0 + 60 * 86400)) --disable-after 30d
	assert_success
	assert_output ""
	cycle $((T0 + 365 * 86400))
	assert_equal "$(cat retry.out deliver.out)" ""
	assert_equal "$(received | wc -l)" 15
}

@test "--schedule 1s,2s: three attempts, then dead; said by -v" {
	receiver_start
	ep f /fail
	hooks f 1 >recs
	id=$(jq -r .webhook recs)
	run whk-deliver <recs
	assert_failure 1
	retry $T0 --schedule 1s,2s -v
	assert_success
	assert_output ""
	assert_equal "$stderr" "whk-retry: scheduled 1 (0 dead), emitted 0 (0 probes), held 0 (breaker), rejected 0"
	d1=$(next_of "$id")
	within $((d1 - T0 * 1000)) 1000
	cycle "$(secs "$d1")" --schedule 1s,2s
	assert_equal "$(cat retry.out)" "$(emitted "$id" f retry 1 "$d1")"
	retry "$(secs "$d1")" --schedule 1s,2s
	d2=$(next_of "$id")
	within $((d2 - d1)) 2000
	cycle "$(secs "$d2")" --schedule 1s,2s
	assert_equal "$(cat retry.out)" "$(emitted "$id" f retry 2 "$d2")"
	assert_equal "$(jq .attempt deliver.out)" 3
	retry "$(secs "$d2")" --schedule 1s,2s -v
	assert_success
	assert_output ""
	# (The dead are not counted as scheduled.)
	assert_equal "$stderr" "whk-retry: scheduled 0 (1 dead), emitted 0 (0 probes), held 0 (breaker), rejected 0"
	run sql "SELECT state, attempts, next_at IS NULL FROM webhooks"
	assert_output "dead|3|1"
	# Dead is dead, whatever schedule a later run is given.
	cycle $((T0 + 86400)) --schedule '1s*10'
	assert_equal "$(cat retry.out deliver.out)" ""
	cycle $((T0 + 86400))
	assert_equal "$(cat retry.out deliver.out)" ""
	assert_equal "$(received | wc -l)" 3
}

@test "--schedule with *N repetition; an endpoint's own schedule (whk-endpoint --schedule) wins over it; '' clears it" {
	receiver_start
	ep a /fail
	ep b /fail --schedule '10s*3'
	ep c /fail --schedule '1h'
	whk-endpoint set c --schedule '' >/dev/null
	run eval 'whk-endpoint list | jq -c "[.endpoint, .schedule]"'
	assert_output $'["a",null]\n["b","10s*3"]\n["c",null]'
	{
		hooks a 1
		hooks b 1
		hooks c 1
	} >recs
	run whk-deliver <recs
	assert_failure 1
	walk --schedule '1m*2,1h'
	run waits_of a
	[ "${#lines[@]}" -eq 3 ]
	within "${lines[0]}" 60000
	within "${lines[1]}" 60000
	within "${lines[2]}" 3600000
	run waits_of b
	[ "${#lines[@]}" -eq 3 ]
	within "${lines[0]}" 10000
	within "${lines[1]}" 10000
	within "${lines[2]}" 10000
	run waits_of c
	[ "${#lines[@]}" -eq 3 ]
	within "${lines[0]}" 60000
	within "${lines[1]}" 60000
	within "${lines[2]}" 3600000
	run sql "SELECT e.name, w.state, w.attempts FROM webhooks w
	    JOIN endpoints e ON e.id = w.endpoint_id ORDER BY e.name"
	assert_output $'a|dead|4\nb|dead|4\nc|dead|4'
	assert_equal "$(received | wc -l)" 12
}

@test "jitter is a function of the webhook and the attempt: the same failure gets the same time from any run; different webhooks get different times" {
	receiver_start
	ep f /fail
	hooks f 4 >recs
	run whk-deliver <recs
	assert_failure 1
	sqlite3 "$WHK_STORE" ".backup copy.db"
	retry $T0 --trip-after 100
	sql "SELECT id, next_at FROM webhooks ORDER BY seq" >first
	WHK_STORE=$BATS_TEST_TMPDIR/copy.db retry $T0 --trip-after 100
	assert_success
	WHK_STORE=$BATS_TEST_TMPDIR/copy.db sql "SELECT id, next_at FROM webhooks ORDER BY seq" >second
	run diff first second
	assert_success
	run eval "cut -d'|' -f2 first | sort -u | wc -l"
	assert_output 4
}

@test "Retry-After: a 429 saying 600 s makes next_at exactly then, not before; one shorter than the step is overruled by it" {
	receiver_start
	ep slow '/retry-after?s=600&status=429'
	ep brief '/retry-after?s=2&status=503'
	{
		hooks slow 1
		hooks brief 1
	} >recs
	s=$(jq -r 'select(.endpoint == "slow") | .webhook' recs)
	b=$(jq -r 'select(.endpoint == "brief") | .webhook' recs)
	run whk-deliver <recs
	assert_failure 1
	retry $T0
	assert_success
	assert_output ""
	run sql "SELECT e.name, w.not_before - $T0 * 1000, w.next_at - $T0 * 1000
	    FROM webhooks w JOIN endpoints e ON e.id = w.endpoint_id
	    WHERE e.name = 'slow'"
	assert_output "slow|600000|600000"
	run sql "SELECT not_before - $T0 * 1000 FROM webhooks WHERE id = '$b'"
	assert_output 2000
	bdue=$(next_of "$b")
	within $((bdue - T0 * 1000)) 5000
	# (brief recovers and is out of the way.)
	whk-endpoint set brief --url "$RECEIVER/ok" >/dev/null
	cycle "$(secs "$bdue")"
	assert_equal "$(cat retry.out)" "$(emitted "$b" brief retry 1 "$bdue")"
	assert_equal "$(jq -r .outcome deliver.out)" delivered
	cycle $((T0 + 599)).999
	assert_equal "$(cat retry.out)" ""
	cycle $((T0 + 600))
	assert_equal "$(cat retry.out)" "$(emitted "$s" slow retry 1 $(((T0 + 600) * 1000)))"
	like "$(cat deliver.out)" "{\"webhook\":\"$s\",\"endpoint\":\"slow\",\"attempt\":2,\"kind\":\"retry\",\"status\":429,\"ms\":@N@,\"outcome\":\"failed\",\"error\":\"HTTP 429\",\"retry_after\":\"$(iso $((T0 + 1200)))\"}"
}

# --- stdin -----------------------------------------------------------------

@test "stdin: whk-deliver's records piped in get the failed webhooks scheduled at once, and emitted in the same run when due" {
	receiver_start
	ep a /ok
	ep f /fail
	{
		hooks a 1
		hooks f 2
	} >recs
	run --separate-stderr eval 'whk-deliver <recs | whk-retry -v'
	assert_success
	assert_output ""
	assert_equal "$stderr" "whk-retry: scheduled 2 (0 dead), emitted 0 (0 probes), held 0 (breaker), rejected 0"
	run sql "SELECT e.name, w.state, w.next_at IS NULL FROM webhooks w
	    JOIN endpoints e ON e.id = w.endpoint_id ORDER BY w.seq"
	assert_output $'a|delivered|1\nf|failed|0\nf|failed|0'
	run sql "SELECT count(*) FROM webhooks WHERE state = 'failed'
	    AND next_at - $T0 * 1000 BETWEEN 4000 AND 6000"
	assert_output 2
	# Failures handed over later than their first retry is due: emitted
	# by the run that schedules them.
	hooks f 2 >more
	whk-deliver <more >out || true
	WHK_NOW=$((T0 + 60)) run --separate-stderr whk-retry -v <out
	assert_success
	[ "${#lines[@]}" -eq 4 ]
	assert_equal "$stderr" "whk-retry: scheduled 2 (0 dead), emitted 4 (0 probes), held 0 (breaker), rejected 0"
	run eval "jq -r '[.reason, .attempts] | @tsv' <<<\"\$output\" | sort | uniq -c | tr -s ' '"
	assert_output " 4 retry	1"
}

@test "stdin: lines not JSON, without \"webhook\" or naming an unknown webhook are rejected by line number; the good ones processed; exit 1" {
	receiver_start
	ep a /ok
	ep f /fail
	{
		hooks f 1
		hooks a 1
		hooks f 1
	} >recs
	whk-deliver <recs >out || true
	{
		sed -n 1p out
		echo 'not json'
		echo '{"x":1}'
		echo '{"webhook":"msg_00000000000000000000000000","outcome":"failed"}'
		echo '[1,2]'
		sed -n 2,3p out
		jq -c '{webhook}' recs | head -n 1
	} >input
	WHK_NOW=$((T0 + 60)) run --separate-stderr whk-retry -v <input
	assert_failure 1
	[ "${#lines[@]}" -eq 2 ]
	run eval "jq -r '[.endpoint, .reason, .attempts] | @tsv' <<<\"\$output\""
	assert_output $'f\tretry\t1\nf\tretry\t1'
	run grep -o '^whk-retry: line [0-9]*: ' <<<"$stderr"
	assert_output $'whk-retry: line 2: \nwhk-retry: line 3: \nwhk-retry: line 4: \nwhk-retry: line 5: '
	assert_equal "${stderr##*$'\n'}" "whk-retry: scheduled 2 (0 dead), emitted 2 (0 probes), held 0 (breaker), rejected 4"
	assert_equal "$(grep -c . <<<"$stderr")" 5
}

@test "stdin: the rejections say why, like whk-deliver's" {
	receiver_start
	ep f /fail
	hooks f 1 >recs
	whk-deliver <recs >out || true
	{
		echo 'not json'
		echo '{"x":1}'
		echo '{"webhook":"msg_00000000000000000000000000"}'
		echo '[1,2]'
		cat out
	} >input
	run --separate-stderr whk-retry <input
	assert_failure 1
	assert_output ""
	assert_equal "$stderr" "whk-retry: line 1: not JSON: invalid literal 'not'
whk-retry: line 2: no \"webhook\" id in the record
whk-retry: line 3: no webhook 'msg_00000000000000000000000000' in the store
whk-retry: line 4: not a JSON object but array"
	run sql "SELECT next_at IS NOT NULL FROM webhooks"
	assert_output 1
}

# --- hand-outs and overlapping runs ----------------------------------------

@test "two whk-retry started at once emit each due webhook exactly once between them; not again for 10 minutes unless attempted; again after" {
	receiver_start
	for i in $(seq 20); do
		ep "f$i" /fail
		hooks "f$i" 2
	done >recs
	run whk-deliver <recs
	assert_failure 1
	t=$((T0 + 10))
	WHK_NOW=$t whk-retry </dev/null >out1 2>err1 3>&- &
	p1=$!
	WHK_NOW=$t whk-retry </dev/null >out2 2>err2 3>&- &
	p2=$!
	s1=0 s2=0
	wait "$p1" || s1=$?
	wait "$p2" || s2=$?
	assert_equal "$s1/$s2" "0/0"
	assert_equal "$(cat err1 err2)" ""
	echo "split: $(wc -l <out1) + $(wc -l <out2)"
	assert_equal "$(cat out1 out2 | wc -l)" 40
	run eval 'cat out1 out2 | jq -r .webhook | sort | uniq -d'
	assert_output ""
	run eval 'cat out1 out2 | jq -r .webhook | sort'
	assert_output "$(jq -r .webhook recs | sort)"
	run eval 'cat out1 out2 | jq -r .reason | sort -u'
	assert_output retry
	# Each run's lines in due order.
	for f in out1 out2; do
		run eval "jq -r .due_at $f | sort -c"
		assert_success
	done
	# Handed out: not again within 10 minutes...
	retry $t
	assert_success
	assert_output ""
	retry $((t + 599))
	assert_success
	assert_output ""
	# ...nor ever in flight...
	sql "UPDATE webhooks SET lease_until = $(((t + 3600) * 1000)),
	    lease_owner = 'elsewhere:1' WHERE id = '$(jq -r .webhook out1 out2 | head -n 1)'"
	# ...but again once the pipe that had them was lost.
	retry $((t + 601))
	assert_success
	[ "${#lines[@]}" -eq 39 ]
	echo "$output" >again
	run eval 'jq -r .reason again | sort -u'
	assert_output retry
	# Attempted: that ends the hand-out; the next retry is due on schedule
	# (1 m), not 10 minutes later.
	run eval 'WHK_NOW=$((t + 601)) whk-deliver <again'
	assert_failure 1
	[ "${#lines[@]}" -eq 39 ]
	retry $((t + 601))
	assert_output ""
	retry $((t + 601 + 75))
	assert_success
	[ "${#lines[@]}" -eq 39 ]
	run eval 'jq -r "[.reason, .attempts] | @tsv" <<<"$output" | sort -u'
	assert_output $'retry\t2'
	assert_equal "$(received | wc -l)" 79
}

@test "a webhook emitted and attempted is not emitted again by a run before its next retry" {
	receiver_start
	ep f /fail
	hooks f 1 >recs
	id=$(jq -r .webhook recs)
	run whk-deliver <recs
	assert_failure 1
	cycle $((T0 + 10))
	assert_equal "$(wc -l <retry.out)/$(wc -l <deliver.out)" "1/1"
	retry $((T0 + 10))
	assert_success
	assert_output ""
	due=$(next_of "$id")
	within $((due - (T0 + 10) * 1000)) 60000
	retry "$(secs $((due - 1)))"
	assert_output ""
	retry "$(secs "$due")"
	assert_output "$(emitted "$id" f retry 2 "$due")"
}

# --- expired leases --------------------------------------------------------

@test "an expired lease (a deliverer died mid-flight) is emitted with reason expired; whk-deliver records the lost attempt, then delivers; a lease still running is never emitted" {
	receiver_start
	ep a /ok
	hooks a 3 >recs
	mapfile -t w < <(jq -r .webhook recs)
	until=$(((T0 - 60) * 1000))
	sql "UPDATE webhooks SET lease_until = $until, lease_owner = 'dead-host:4242'
	    WHERE id = '${w[0]}'"
	sql "UPDATE webhooks SET lease_until = $(((T0 + 60) * 1000)),
	    lease_owner = 'live-host:1' WHERE id = '${w[1]}'"
	retry $T0 --dry-run
	assert_success
	assert_output "$(emitted "${w[0]}" a expired 0 "$until")"
	cycle $T0 -v
	assert_equal "$rs/$ds" "0/1"
	assert_equal "$(cat retry.out)" "$(emitted "${w[0]}" a expired 0 "$until")"
	assert_equal "$(cat retry.err)" "whk-retry: scheduled 0 (0 dead), emitted 1 (0 probes), held 0 (breaker), rejected 0"
	run cat deliver.out
	[ "${#lines[@]}" -eq 2 ]
	assert_equal "${lines[0]}" "{\"webhook\":\"${w[0]}\",\"endpoint\":\"a\",\"attempt\":1,\"kind\":\"first\",\"status\":null,\"ms\":null,\"outcome\":\"failed\",\"error\":\"$LOST\"}"
	like "${lines[1]}" "{\"webhook\":\"${w[0]}\",\"endpoint\":\"a\",\"attempt\":2,\"kind\":\"retry\",\"status\":200,\"ms\":@N@,\"outcome\":\"delivered\",\"error\":null}"
	run attempts_of a
	assert_output "1|first||failed|$LOST
2|retry|200|delivered|"
	run sql "SELECT id, state, attempts, lease_until IS NULL FROM webhooks ORDER BY seq"
	assert_output "${w[0]}|delivered|2|1
${w[1]}|pending|0|0
${w[2]}|pending|0|1"
	# Never attempted, not leased: the first-attempt lane's, not the slow lane's.
	cycle $((T0 + 30))
	assert_equal "$(cat retry.out)" ""
	# The running lease, once past, is the slow lane's.
	cycle $((T0 + 61))
	assert_equal "$(cat retry.out)" "$(emitted "${w[1]}" a expired 0 $(((T0 + 60) * 1000)))"
	assert_equal "$(jq -r '[.attempt, .outcome] | @tsv' deliver.out)" $'1\tfailed\n2\tdelivered'
	assert_equal "$(received | jq -r .id)" "${w[0]}
${w[1]}"
}

# --- the circuit breaker ---------------------------------------------------

@test "circuit breaker: after 5 failed attempts in a row, one probe at a time (the one due longest), the others held where they are; a delivered probe closes it and the rest flow" {
	receiver_start
	ep b /fail
	hooks b 7 >recs
	run whk-deliver <recs
	assert_failure 1
	retry $T0
	assert_success
	assert_output ""
	sql "SELECT id, next_at FROM webhooks ORDER BY next_at, seq" | tr '|' ' ' >sched
	mapfile -t w < <(cut -d' ' -f1 sched)
	mapfile -t n < <(cut -d' ' -f2 sched)
	t=$((T0 + 10))
	cycle $t -v
	assert_equal "$rs/$ds" "0/1"
	assert_equal "$(cat retry.out)" "$(emitted "${w[0]}" b probe 1 "${n[0]}")"
	assert_equal "$(cat retry.err)" "whk-retry: scheduled 0 (0 dead), emitted 1 (1 probes), held 6 (breaker), rejected 0"
	like "$(cat deliver.out)" "{\"webhook\":\"${w[0]}\",\"endpoint\":\"b\",\"attempt\":2,\"kind\":\"retry\",\"status\":500,\"ms\":@N@,\"outcome\":\"failed\",\"error\":\"HTTP 500\"}"
	# The next probe: the one due longest of the rest.
	retry $t
	assert_success
	assert_output "$(emitted "${w[1]}" b probe 1 "${n[1]}")"
	echo "$output" >probe
	# None while it is handed out.
	retry $t -v
	assert_success
	assert_output ""
	assert_equal "$stderr" "whk-retry: scheduled 0 (0 dead), emitted 0 (0 probes), held 5 (breaker), rejected 0"
	# The held ones' schedule did not move.
	run sql "SELECT id || ' ' || next_at FROM webhooks WHERE id NOT IN
	    ('${w[0]}', '${w[1]}') ORDER BY next_at, seq"
	assert_output "$(tail -n 5 sched)"
	run eval 'WHK_NOW=$t whk-deliver <probe'
	assert_failure 1
	# The receiver recovers; the next probe is delivered; the rest flow.
	whk-endpoint set b --url "$RECEIVER/ok" >/dev/null
	cycle $t
	assert_equal "$rs/$ds" "0/0"
	assert_equal "$(cat retry.out)" "$(emitted "${w[2]}" b probe 1 "${n[2]}")"
	like "$(cat deliver.out)" "{\"webhook\":\"${w[2]}\",\"endpoint\":\"b\",\"attempt\":2,\"kind\":\"retry\",\"status\":200,\"ms\":@N@,\"outcome\":\"delivered\",\"error\":null}"
	cycle $t -v
	assert_equal "$rs/$ds" "0/0"
	assert_equal "$(cat retry.out)" "$(for i in 3 4 5 6; do emitted "${w[i]}" b retry 1 "${n[i]}"; echo; done)"
	assert_equal "$(cat retry.err)" "whk-retry: scheduled 0 (0 dead), emitted 4 (0 probes), held 0 (breaker), rejected 0"
	assert_equal "$(jq -r .outcome deliver.out | sort -u)" delivered
	# The two failed probes follow their own schedule.
	cycle $((t + 100))
	assert_equal "$(jq -r '[.webhook, .reason, .attempts] | @tsv' retry.out | sort)" "$(printf '%s\tretry\t2\n' "${w[0]}" "${w[1]}" | sort)"
	run states
	assert_output "delivered|7"
	assert_equal "$(received | wc -l)" 16
}

@test "--trip-after N sets the threshold; each endpoint has its own breaker; --dry-run shows it and changes nothing" {
	receiver_start
	ep four /fail
	ep five /fail
	{
		hooks four 4
		hooks five 5
	} >recs
	run whk-deliver <recs
	assert_failure 1
	retry $T0
	assert_success
	assert_output ""
	sql "SELECT id, state, attempts, next_at, resend FROM webhooks ORDER BY seq" >before
	t=$((T0 + 10))
	reasons() {
		WHK_NOW=$t whk-retry --dry-run "$@" </dev/null |
		    jq -r '[.endpoint, .reason] | @tsv' | sort | uniq -c |
		    tr -s ' ' | sed 's/^ //'
	}
	run reasons
	assert_output $'1 five\tprobe\n4 four\tretry'
	run reasons --trip-after 6
	assert_output $'5 five\tretry\n4 four\tretry'
	run reasons --trip-after 4
	assert_output $'1 five\tprobe\n1 four\tprobe'
	run reasons --trip-after 1
	assert_output $'1 five\tprobe\n1 four\tprobe'
	# Nothing written by the dry runs.
	run sql "SELECT id, state, attempts, next_at, resend FROM webhooks ORDER BY seq"
	assert_output "$(cat before)"
	# Dry runs handed out nothing.
	retry $t --trip-after 6 -v
	assert_success
	[ "${#lines[@]}" -eq 9 ]
	assert_equal "$stderr" "whk-retry: scheduled 0 (0 dead), emitted 9 (0 probes), held 0 (breaker), rejected 0"
}

# --- auto-disable ----------------------------------------------------------

@test "auto-disable: failing everything for 5 days disables the endpoint with its reason; its webhooks wait, neither emitted nor dead, and flow again once enabled" {
	receiver_start
	ep d /fail
	hooks d 5 >recs
	run whk-deliver <recs
	assert_failure 1
	retry $T0
	assert_success
	# Just under 5 days: a probe still goes.
	cycle $((T0 + 5 * 86400 - 1))
	assert_equal "$(jq -r .reason retry.out)" probe
	assert_equal "$(cat retry.err)" ""
	# --disable-after 6d: not yet.
	cycle $((T0 + 5 * 86400)) --disable-after 6d
	assert_equal "$(jq -r .reason retry.out)" probe
	assert_equal "$(cat retry.err)" ""
	run sql "SELECT disabled_at FROM endpoints"
	assert_output ""
	reason="every attempt failed for 5d (since $(iso $T0))"
	retry $((T0 + 5 * 86400))
	assert_success
	assert_output ""
	assert_equal "$stderr" "whk-retry: endpoint 'd' disabled: $reason"
	run eval 'whk-endpoint show d | jq -c "[.state, .disabled_reason, .disabled_at]"'
	assert_output "[\"disabled\",\"$reason\",\"$(iso $((T0 + 5 * 86400)))\"]"
	run sql "SELECT disabled_reason FROM endpoints"
	assert_output "$reason"
	WHK_NOW=$((T0 + 5 * 86400 + 1)) whk-endpoint set d --url "$RECEIVER/ok" >/dev/null
	# Weeks later: nothing emitted, nothing dead.
	cycle $((T0 + 60 * 86400)) -v
	assert_equal "$(cat retry.out)" ""
	assert_equal "$rs" 0
	run states
	assert_output "failed|5"
	assert_equal "$(received | wc -l)" 7
	# Enabled then: a probe, then the rest.  (The receiver was fixed long
	# before: enabling is what gives the endpoint a fresh start.)
	t=$((T0 + 60 * 86400 + 60))
	WHK_NOW=$t whk-endpoint enable d >/dev/null
	cycle $t
	assert_equal "$(cat retry.err)" ""
	assert_equal "$(jq -r .reason retry.out)" probe
	assert_equal "$(jq -r .outcome deliver.out)" delivered
	cycle $t
	assert_equal "$(jq -r .reason retry.out | sort | uniq -c | tr -s ' ')" " 4 retry"
	run states
	assert_output "delivered|5"
	run sql "SELECT disabled_at IS NULL FROM endpoints"
	assert_output 1
}


@test "--disable-after 1h: the failing streak counts from the endpoint's last delivered attempt; the notice is said even with -q; other endpoints flow meanwhile" {
	receiver_start
	ep d /fail
	ep e /ok
	ep f '/fail-first?k=1'
	hooks e 1 >e1.recs
	run whk-deliver <e1.recs
	assert_success
	hooks d 5 >recs
	run whk-deliver <recs
	assert_failure 1
	# e delivered at T0, then failed five times from T0 + 600.
	whk-endpoint set e --url "$RECEIVER/fail" >/dev/null
	WHK_NOW=$((T0 + 600)) hooks e 5 >e.recs
	WHK_NOW=$((T0 + 600)) hooks f 1 >f.recs
	WHK_NOW=$((T0 + 600)) whk-deliver <e.recs >/dev/null || true
	WHK_NOW=$((T0 + 600)) whk-deliver <f.recs >/dev/null || true
	# d's first probe, failed.
	cycle $((T0 + 600))
	assert_equal "$(jq -r '[.endpoint, .reason] | @tsv' retry.out)" $'d\tprobe'
	assert_equal "$(jq -r .outcome deliver.out)" failed
	# An hour after T0, d's streak is an hour old; e's is not.
	retry $((T0 + 3599)) --disable-after 1h --dry-run
	assert_success
	assert_equal "$(jq -r '[.endpoint, .reason] | @tsv' <<<"$output" | sort)" $'d\tprobe\ne\tprobe\nf\tretry'
	[ -z "$stderr" ]
	# A dry run shows d held back, and disables nothing.
	retry $((T0 + 3600)) --disable-after 1h --dry-run
	assert_success
	assert_equal "$(jq -r '[.endpoint, .reason] | @tsv' <<<"$output" | sort)" $'e\tprobe\nf\tretry'
	run sql "SELECT count(*) FROM endpoints WHERE disabled_at IS NOT NULL"
	assert_output 0
	cycle $((T0 + 3600)) --disable-after 1h
	assert_equal "$rs" 0
	assert_equal "$(cat retry.err)" "whk-retry: endpoint 'd' disabled: every attempt failed for 1h (since $(iso $T0))"
	assert_equal "$(jq -r '[.endpoint, .reason] | @tsv' retry.out | sort)" $'e\tprobe\nf\tretry'
	assert_equal "$(jq -r '[.endpoint, .outcome] | @tsv' deliver.out | sort)" $'e\tfailed\nf\tdelivered'
	run sql "SELECT name, disabled_reason FROM endpoints WHERE disabled_at IS NOT NULL"
	assert_output "d|every attempt failed for 1h (since $(iso $T0))"
	# e's turn an hour after its first failure.  (With -q too: cron and
	# systemd are to pass it on, as the examples say.)
	cycle $((T0 + 4199)) --disable-after 1h -q
	assert_equal "$(jq -r '[.endpoint, .reason] | @tsv' retry.out)" $'e\tprobe'
	assert_equal "$(cat retry.err)" ""
	cycle $((T0 + 4200)) --disable-after 1h -q
	assert_equal "$rs" 0
	assert_equal "$(cat retry.out)" ""
	assert_equal "$(cat retry.err)" "whk-retry: endpoint 'e' disabled: every attempt failed for 1h (since $(iso $((T0 + 600))))"
	run sql "SELECT name, disabled_reason FROM endpoints WHERE disabled_at IS NOT NULL ORDER BY name"
	assert_output "d|every attempt failed for 1h (since $(iso $T0))
e|every attempt failed for 1h (since $(iso $((T0 + 600))))"
	run sql "SELECT state, count(*) FROM webhooks WHERE state != 'delivered' GROUP BY 1"
	assert_output "failed|10"
}

# --- resend ----------------------------------------------------------------

@test "resend a delivered webhook: --now ID prints it with reason resend; whk-deliver sends the same webhook-id with a fresh timestamp and signature; the attempt's kind is resend" {
	S=$(secret_of 32)
	receiver_start --secret "$S"
	ep a /ok --secret "$S"
	hooks a 1 >recs
	id=$(jq -r .webhook recs)
	run whk-deliver <recs
	assert_success
	t=$((T0 + 3600))
	retry $t --now "$id"
	assert_success
	assert_output "$(emitted "$id" a resend 1 $((t * 1000)))"
	[ -z "$stderr" ]
	echo "$output" >resend
	run sql "SELECT state, resend, next_at FROM webhooks"
	assert_output "delivered|1|$((t * 1000))"
	run eval 'WHK_NOW=$t whk-deliver <resend'
	assert_success
	like "$output" "{\"webhook\":\"$id\",\"endpoint\":\"a\",\"attempt\":2,\"kind\":\"resend\",\"status\":200,\"ms\":@N@,\"outcome\":\"delivered\",\"error\":null}"
	run attempts_of a
	assert_output $'1|first|200|delivered|\n2|resend|200|delivered|'
	run sql "SELECT state, attempts, resend, next_at IS NULL, lease_until IS NULL FROM webhooks"
	assert_output "delivered|2|0|1|1"
	# Same webhook-id; the timestamp is the resend's; both signed right.
	run eval 'received | jq -r "[.id, .timestamp, .sig] | @tsv"'
	assert_output "$id	$T0	true
$id	$t	true"
	[ "$(received | jq -r .signature | sort -u | wc -l)" -eq 2 ]
	run eval "received | sigcheck '$S'"
	assert_output "2 ok"
	assert_equal "$(received | jq -r .body | sort -u | wc -l)" 1
	# Once is enough.
	cycle $((t + 86400))
	assert_equal "$(cat retry.out deliver.out)" ""
}

@test "resend a dead and a failed webhook, from records on stdin: Retry-After ignored; each delivered with kind resend" {
	receiver_start
	ep d /fail
	ep f '/retry-after?s=86400&status=429'
	hooks d 1 >d.recs
	hooks f 1 >f.recs
	whk-deliver <d.recs >/dev/null || true
	whk-deliver <f.recs >/dev/null || true
	d=$(jq -r .webhook d.recs)
	f=$(jq -r .webhook f.recs)
	retry $T0 --schedule 1s
	cycle $((T0 + 2)) --schedule 1s
	assert_equal "$(jq -r '[.webhook, .reason] | @tsv' retry.out)" "$d	retry"
	retry $((T0 + 2)) --schedule 1s
	run sql "SELECT id, state, attempts, not_before FROM webhooks ORDER BY seq"
	assert_output "$d|dead|2|
$f|failed|1|$(((T0 + 86400) * 1000))"
	whk-endpoint set d --url "$RECEIVER/ok" >/dev/null
	whk-endpoint set f --url "$RECEIVER/ok" >/dev/null
	t=$((T0 + 60))
	run --separate-stderr eval 'cat d.recs f.recs | WHK_NOW=$t whk-retry --now'
	assert_success
	[ -z "$stderr" ]
	assert_equal "$(sort <<<"$output")" "$(sort <<<"$(emitted "$d" d resend 2 $((t * 1000)))
$(emitted "$f" f resend 1 $((t * 1000)))")"
	run eval 'WHK_NOW=$t whk-deliver <<<"$output" | jq -r "[.webhook, .attempt, .kind, .outcome] | @tsv" | sort'
	assert_output "$(printf '%s\t3\tresend\tdelivered\n%s\t2\tresend\tdelivered\n' "$d" "$f" | sort)"
	run sql "SELECT id, state, resend, not_before IS NULL FROM webhooks ORDER BY seq"
	assert_output "$d|delivered|0|1
$f|delivered|0|1"
	# whk-deliver's own records will do as stdin, too.
	run eval 'WHK_NOW=$t whk-deliver <d.recs'
	assert_success
	assert_output ""
	run eval 'jq -c "{webhook, outcome: \"delivered\"}" d.recs | WHK_NOW=$((t + 1)) whk-retry --now | WHK_NOW=$((t + 1)) whk-deliver'
	assert_success
	like "$output" "{\"webhook\":\"$d\",\"endpoint\":\"d\",\"attempt\":4,\"kind\":\"resend\",\"status\":200,\"ms\":@N@,\"outcome\":\"delivered\",\"error\":null}"
}

@test "a resend owed but never attempted is emitted again by the slow lane after 10 minutes, with reason resend; a webhook in flight is marked too" {
	receiver_start
	ep a /ok
	hooks a 2 >recs
	mapfile -t w < <(jq -r .webhook recs)
	whk-deliver <recs >/dev/null
	t=$((T0 + 100))
	retry $t --now "${w[0]}"
	assert_output "$(emitted "${w[0]}" a resend 1 $((t * 1000)))"
	retry $t
	assert_output ""
	retry $((t + 599))
	assert_output ""
	cycle $((t + 601))
	assert_equal "$(cat retry.out)" "$(emitted "${w[0]}" a resend 1 $((t * 1000)))"
	like "$(cat deliver.out)" "{\"webhook\":\"${w[0]}\",\"endpoint\":\"a\",\"attempt\":2,\"kind\":\"resend\",\"status\":200,\"ms\":@N@,\"outcome\":\"delivered\",\"error\":null}"
	# In flight: marked, printed; the resend goes after the current attempt.
	sql "UPDATE webhooks SET lease_until = $(((t + 700) * 1000)),
	    lease_owner = 'elsewhere:1' WHERE id = '${w[1]}'"
	retry $((t + 650)) --now "${w[1]}"
	assert_success
	assert_output "$(emitted "${w[1]}" a resend 1 $(((t + 650) * 1000)))"
	run sql "SELECT resend, lease_owner FROM webhooks WHERE id = '${w[1]}'"
	assert_output "1|elsewhere:1"
	run eval 'WHK_NOW=$((t + 650)) whk-deliver <<<"$(emitted "${w[1]}" a resend 1 0)"'
	assert_success
	assert_output ""
	assert_equal "$(received | wc -l)" 3
}

@test "bulk resend: --now with --endpoint, --status, --since and --until (Unix seconds, RFC 3339, or a duration ago); --dry-run lists and changes nothing; --limit" {
	receiver_start
	ep a /ok
	ep f /fail
	WHK_NOW=$T0 hooks a 2 >r1
	WHK_NOW=$((T0 + 3600)) hooks a 2 >r2
	WHK_NOW=$((T0 + 7200)) hooks f 2 >r3
	t=$((T0 + 7300))
	cat r1 r2 r3 | WHK_NOW=$t whk-deliver >/dev/null || true
	sql "SELECT id, state, attempts, next_at, resend FROM webhooks ORDER BY seq" >before
	ids() {
		WHK_NOW=$t whk-retry --now --dry-run "$@" </dev/null | jq -r .webhook | sort
	}
	run ids --endpoint a
	assert_output "$(cat r1 r2 | jq -r .webhook | sort)"
	run ids --status failed
	assert_output "$(jq -r .webhook r3 | sort)"
	run ids --status delivered --endpoint a
	assert_output "$(cat r1 r2 | jq -r .webhook | sort)"
	run ids --status pending
	assert_output ""
	run ids --since $((T0 + 1800)) --until $((T0 + 5400))
	assert_output "$(jq -r .webhook r2 | sort)"
	run ids --since "$(iso $((T0 + 1800)))" --endpoint a
	assert_output "$(jq -r .webhook r2 | sort)"
	run ids --until "$(iso $((T0 + 1800)))"
	assert_output "$(jq -r .webhook r1 | sort)"
	run ids --since 1h
	assert_output "$(jq -r .webhook r3 | sort)"
	run ids --since 2h --until 30m
	assert_output "$(jq -r .webhook r2 | sort)"
	# The filters narrow ids too.
	run ids --endpoint f $(jq -r .webhook r1 r3)
	assert_output "$(jq -r .webhook r3 | sort)"
	retry $t --now --dry-run --endpoint a --limit 3
	assert_success
	[ "${#lines[@]}" -eq 3 ]
	like "${lines[0]}" "{\"webhook\":\"@MSG@\",\"endpoint\":\"a\",\"reason\":\"resend\",\"attempts\":1,\"due_at\":\"$(iso $t)\"}"
	# The dry runs changed nothing, sent nothing.
	run sql "SELECT id, state, attempts, next_at, resend FROM webhooks ORDER BY seq"
	assert_output "$(cat before)"
	assert_equal "$(received | wc -l)" 6
	# For real.
	run --separate-stderr eval 'WHK_NOW=$t whk-retry --now --endpoint a -v | WHK_NOW=$t whk-deliver'
	assert_success
	[ "${#lines[@]}" -eq 4 ]
	assert_equal "$(jq -r .kind <<<"$output" | sort -u)" resend
	assert_equal "$(received | wc -l)" 10
}

@test "--now: an unknown id is said, exit 1, the others resent; nothing to select is a usage error; a disabled endpoint's webhook is refused" {
	receiver_start
	ep a /ok
	ep b /ok
	hooks a 2 >recs
	hooks b 1 >>recs
	mapfile -t w < <(jq -r .webhook recs)
	whk-deliver <recs >/dev/null
	t=$((T0 + 60))
	retry $t --now msg_00000000000000000000000000 "${w[0]}"
	assert_failure 1
	assert_output "$(emitted "${w[0]}" a resend 1 $((t * 1000)))"
	assert_equal "$stderr" "whk-retry: no webhook 'msg_00000000000000000000000000'"
	retry $t --now
	assert_failure 2
	assert_output ""
	assert_equal "${stderr%%$'\n'*}" "whk-retry: --now needs ids, records on stdin or a filter"
	assert_regex "$stderr" $'\nusage: whk-retry '

	whk-endpoint disable b >/dev/null
	retry $t --now "${w[2]}" "${w[1]}"
	assert_failure 1
	assert_output "$(emitted "${w[1]}" a resend 1 $((t * 1000)))"
	assert_equal "$stderr" "whk-retry: webhook '${w[2]}': endpoint 'b' is disabled"
	run sql "SELECT id, resend FROM webhooks ORDER BY seq"
	assert_output "${w[0]}|1
${w[1]}|1
${w[2]}|0"
	retry $t --now --dry-run "${w[2]}"
	assert_failure 1
	assert_output ""
	assert_equal "$stderr" "whk-retry: webhook '${w[2]}': endpoint 'b' is disabled"
	assert_equal "$(received | wc -l)" 3
}

# --- limits, -v, -q --------------------------------------------------------

@test "--limit N: at most N lines, the ones due longest; the rest on the next run" {
	receiver_start
	ep f /fail
	ep g /fail
	{
		hooks f 3
		hooks g 3
	} >recs
	run whk-deliver <recs
	assert_failure 1
	retry $T0
	mapfile -t w < <(sql "SELECT id FROM webhooks ORDER BY next_at, seq")
	t=$((T0 + 10))
	retry $t --limit 2 -v
	assert_success
	assert_equal "$(jq -r .webhook <<<"$output")" "${w[0]}
${w[1]}"
	assert_equal "$stderr" "whk-retry: scheduled 0 (0 dead), emitted 2 (0 probes), held 0 (breaker), rejected 0"
	retry $t -l 3
	assert_success
	assert_equal "$(jq -r .webhook <<<"$output")" "${w[2]}
${w[3]}
${w[4]}"
	retry $t --limit 100
	assert_success
	assert_equal "$(jq -r .webhook <<<"$output")" "${w[5]}"
	retry $t
	assert_output ""
}

@test "-v: the summary on stderr; -q: records on stdout still, rejections on stderr still, nothing else; quiet by default" {
	receiver_start
	ep f /fail
	hooks f 2 >recs
	whk-deliver <recs >out || true
	retry $((T0 + 10))
	assert_success
	[ "${#lines[@]}" -eq 2 ]
	[ -z "$stderr" ]
	hooks f 1 >more
	whk-deliver <more >out2 || true
	echo 'oops' >>out2
	WHK_NOW=$((T0 + 10)) run --separate-stderr whk-retry -q <out2
	assert_failure 1
	[ "${#lines[@]}" -eq 1 ]
	assert_regex "$stderr" "^whk-retry: line 2: [^"$'\n'"]+\$"
	retry $((T0 + 10)) -v
	assert_success
	assert_output ""
	assert_equal "$stderr" "whk-retry: scheduled 0 (0 dead), emitted 0 (0 probes), held 0 (breaker), rejected 0"
}

# --- the store -------------------------------------------------------------

@test "a store locked past the busy timeout: exit 3, nothing emitted, nothing changed" {
	receiver_start
	ep f /fail
	hooks f 2 >recs
	whk-deliver <recs >/dev/null || true
	id=$(jq -r .webhook recs | head -n 1)
	sqlite3 "$WHK_STORE" "BEGIN EXCLUSIVE" ".system touch locked" ".system sleep 2" 3>&- &
	locker=$!
	for i in $(seq 100); do [ -e locked ] && break; sleep 0.05; done
	WHK_BUSY_TIMEOUT=200ms retry $((T0 + 10))
	assert_failure 3
	assert_output ""
	assert_equal "$stderr" "whk-retry: store '$WHK_STORE' is locked by another process (waited 200ms)"
	WHK_BUSY_TIMEOUT=200ms retry $((T0 + 10)) --now "$id"
	assert_failure 3
	assert_output ""
	assert_equal "$stderr" "whk-retry: store '$WHK_STORE' is locked by another process (waited 200ms)"
	wait "$locker"
	run sql "SELECT state, next_at IS NULL, resend FROM webhooks"
	assert_output $'failed|1|0\nfailed|1|0'
	retry $((T0 + 10))
	assert_success
	[ "${#lines[@]}" -eq 2 ]
}
