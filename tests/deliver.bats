#!/usr/bin/env bats
# whk-deliver: signed, concurrent POSTs to bin/test-receiver, each attempt
# recorded; outcomes, destinations, caps, leases and signals.

load helpers

bats_require_minimum_version 1.5.0

# --- helpers of this suite -------------------------------------------------

# attempts_of NAME: endpoint NAME's attempts, oldest first, as
# "n|kind|status|outcome|error".
attempts_of() {
	sql "SELECT a.n, a.kind, a.status, a.outcome, a.error FROM attempts a
	    JOIN endpoints e ON e.id = a.endpoint_id WHERE e.name = '$1'
	    ORDER BY a.seq"
}

# max_inflight [LOG]: the most requests the receiver had in hand at once.
max_inflight() {
	received "${1:-}" | jq -s 'map(.inflight) | max // 0'
}

# sigcheck SECRET...: for the receiver's log on stdin, recompute the
# Standard Webhooks signatures with Python's hmac (not our code): each
# request's webhook-signature header must be exactly "v1,<sig>" for each
# SECRET, in that order, space-separated.  Prints "N ok", or the misfits.
sigcheck() {
	py -c '
import base64, hashlib, hmac, json, sys
keys = [base64.b64decode(s[len("whsec_"):], validate=True) for s in sys.argv[1:]]
n, bad = 0, []
for line in sys.stdin:
    r = json.loads(line)
    body = r["body"].encode("utf-8")
    if len(body) != r["bytes"]:
        bad.append("%s: body logged in part" % r["id"])
        continue
    signed = ("%s.%s." % (r["id"], r["timestamp"])).encode() + body
    want = " ".join("v1," + base64.b64encode(hmac.new(k, signed,
        hashlib.sha256).digest()).decode() for k in keys)
    if r["signature"] == want:
        n += 1
    else:
        bad.append("%s: got %r, want %r" % (r["id"], r["signature"], want))
print("\n".join(bad) if bad else "%d ok" % n)' "$@"
}

# bodycheck: every request in the receiver's log (stdin) carried its
# webhook's body byte for byte, as the store holds it (body_kind 0: the
# stored body; 1: its one event; 2: the array of its events).
bodycheck() {
	py -c '
import json, sqlite3, sys
db = sqlite3.connect(sys.argv[1])
db.text_factory = bytes
n, bad = 0, []
for line in sys.stdin:
    r = json.loads(line)
    kind, body, seq = db.execute("SELECT body_kind, body, seq FROM webhooks"
        " WHERE id = ?", (r["id"],)).fetchone()
    evs = [b for (b,) in db.execute("SELECT e.body FROM webhook_events w"
        " JOIN events e ON e.seq = w.event_seq WHERE w.webhook_seq = ?"
        " ORDER BY e.seq", (seq,))]
    want = body if kind == 0 else evs[0] if kind == 1 else \
        b"[" + b",".join(evs) + b"]"
    got = r["body"].encode("utf-8")
    if got == want and r["bytes"] == len(want):
        n += 1
    else:
        bad.append("%s: got %r, want %r" % (r["id"], got, want))
print("\n".join(bad) if bad else "%d ok" % n)' "$WHK_STORE"
}

# wait_sql QUERY VALUE: wait up to 10 s until QUERY answers VALUE.
wait_sql() {
	local i
	for i in $(seq 200); do
		[ "$(sql "$1")" = "$2" ] && return 0
		sleep 0.05
	done
	echo "'$1' is '$(sql "$1")', not '$2'" >&2
	return 1
}

# --- interface -------------------------------------------------------------

@test "--help prints the usage on stdout and exits 0; -V prints the version" {
	run --separate-stderr whk-deliver --help
	assert_success
	assert_line --index 0 "usage: whk-deliver [-s store] [--pending] [--endpoint name] [--limit n]"
	assert_line --partial "  -p, --pending "
	assert_line --partial "  -c, --concurrency N "
	assert_line "2 usage, 3 store unavailable, 4 system error.  See whk-deliver(1)."
	[ -z "$stderr" ]
	run --separate-stderr whk-deliver -h
	assert_success
	assert_line --index 0 --partial "usage: whk-deliver"
	run --separate-stderr whk-deliver -V
	assert_success
	assert_output --regexp '^whk-deliver [0-9]+\.[0-9]+\.[0-9]+$'
	[ -z "$stderr" ]
	[ ! -e "$WHK_STORE" ]
}

@test "on a terminal, a progress line on stderr: sent, delivered, failed, in flight, rate; none with -q or when stderr is not a terminal" {
	receiver_start
	ep a /ok
	ep f /status/500
	ep s '/slow?ms=400' --concurrency 1
	{
		hooks a 3
		hooks f 3
		hooks s 3
	} >recs
	# The terminal's output: the line redrawn in place (CR, erase to the
	# end), the last one ended by a newline.
	script -qec 'whk-deliver <recs >/dev/null' /dev/null </dev/null >tty || true
	run eval "tr '\r' '\n' <tty | sed 's/\x1b\[K//' | grep -v '^\$'"
	like "${lines[-1]}" "whk-deliver: sent 9, delivered 6, failed 3, in flight 0, @N@/s"
	# While the slow ones went one at a time, it said so.
	printf '%s\n' "${lines[@]}" | grep -q ', in flight 1, '
	[ "$(tail -c 1 tty | od -An -c | tr -d ' ')" = '\n' ]
	# -q: nothing.
	hooks f 1 >recs
	script -qec 'whk-deliver -q <recs >/dev/null' /dev/null </dev/null >tty || true
	assert_equal "$(cat tty)" ""
	# Standard output on the terminal, standard error not: nothing there.
	hooks f 1 >recs
	script -qec 'whk-deliver <recs 2>err' /dev/null </dev/null >tty || true
	assert_equal "$(cat err)" ""
	like "$(tr -d '\r' <tty)" '{"webhook":"@MSG@","endpoint":"f","attempt":1,"kind":"first","status":500,"ms":@N@,"outcome":"failed","error":"HTTP 500"}'
}

@test "bad options and values: exit 2 with a clear message, nothing sent" {
	receiver_start
	ep a /ok
	hooks a 1 >recs
	run --separate-stderr whk-deliver --limit 0 <recs
	assert_failure 2
	assert_equal "$stderr" "whk-deliver: --limit: invalid number '0' (expected 1 to 9223372036854775807)"
	run --separate-stderr whk-deliver --limit ten <recs
	assert_failure 2
	assert_equal "$stderr" "whk-deliver: --limit: invalid number 'ten' (expected 1 to 9223372036854775807)"
	run --separate-stderr whk-deliver --concurrency 0 <recs
	assert_failure 2
	assert_equal "$stderr" "whk-deliver: --concurrency: invalid number '0' (expected 1 to 10000)"
	run --separate-stderr whk-deliver -c 10001 <recs
	assert_failure 2
	assert_equal "$stderr" "whk-deliver: --concurrency: invalid number '10001' (expected 1 to 10000)"
	run --separate-stderr whk-deliver --bogus <recs
	assert_failure 2
	assert_equal "${stderr%%$'\n'*}" "whk-deliver: unrecognized option '--bogus'"
	run --separate-stderr whk-deliver --pending extra </dev/null
	assert_failure 2
	assert_equal "${stderr%%$'\n'*}" "whk-deliver: unexpected argument 'extra'"
	run --separate-stderr whk-deliver --endpoint nope <recs
	assert_failure 2
	assert_output ""
	assert_equal "$stderr" "whk-deliver: no endpoint 'nope'"
	run --separate-stderr whk-deliver --pending -e nope </dev/null
	assert_failure 2
	assert_equal "$stderr" "whk-deliver: no endpoint 'nope'"
	WHK_NOW=yesterday run --separate-stderr whk-deliver --pending </dev/null
	assert_failure 2
	assert_equal "$stderr" "whk-deliver: invalid WHK_NOW 'yesterday' (use Unix seconds or RFC 3339)"
	WHK_BUSY_TIMEOUT=forever run --separate-stderr whk-deliver <recs
	assert_failure 2
	assert_equal "$stderr" "whk-deliver: WHK_BUSY_TIMEOUT: invalid duration 'forever' (use 500ms, 5s, 10m, 2h, 7d)"
	WHK_BUSY_TIMEOUT=2h run --separate-stderr whk-deliver <recs
	assert_failure 2
	assert_equal "$stderr" "whk-deliver: WHK_BUSY_TIMEOUT: '2h' is over 1h"
	assert_equal "$(received | wc -l)" 0
	run sql "SELECT count(*) FROM attempts; SELECT attempts, lease_until FROM webhooks"
	assert_output $'0\n0|'
}

# --- the normal path -------------------------------------------------------

@test "ingest | batch | deliver to /ok: one line per webhook; attempts and webhooks recorded; the receiver got each stored body, byte for byte, with our headers" {
	S=$(secret_of 32)
	receiver_start --secret "$S"
	whk-endpoint add plain "$RECEIVER/ok" --allow-private --tenant acme \
	    --secret "$S" --header 'X-Tenant: acme' \
	    --header 'X-Source: whk tests' >/dev/null
	whk-endpoint add shaped "$RECEIVER/ok?shaped" --allow-private \
	    --tenant acme --secret "$S" --template '{kind: .type, data}' >/dev/null
	whk-endpoint add bulk "$RECEIVER/ok?bulk" --allow-private --tenant acme \
	    --secret "$S" --batch 5 >/dev/null
	version=$(whk-deliver -V)
	version=${version#whk-deliver }
	cat >events <<-'EOF'
	{"id":"o-1","tenant":"acme","type":"order.created","data":{"note":"caf\u00e9 é \"q\" \/ \t ✓","n":1.50,"big":12345678901234567890}}
	{"id":"o-2","tenant":"acme","type":"order.paid","data":[],"deep":{"a":[{"b":null}]}}
	EOF
	t0=$(date +%s)
	run --separate-stderr sh -c 'whk-ingest <events | whk-batch | whk-deliver'
	t1=$(date +%s)
	assert_success
	[ -z "$stderr" ]
	[ "${#lines[@]}" -eq 5 ]
	for l in "${lines[@]}"; do
		like "$l" '{"webhook":"@MSG@","endpoint":"@ANY@","attempt":1,"kind":"first","status":200,"ms":@N@,"outcome":"delivered","error":null}'
	done
	jq -r .webhook <<<"$output" | sort >printed
	run eval 'jq -r .endpoint <<<"$output" | sort | uniq -c | tr -s " "'
	assert_output $' 1 bulk\n 2 plain\n 2 shaped'
	# What was printed is what the store holds.
	sql "SELECT id FROM webhooks ORDER BY id" >stored
	run diff printed stored
	assert_success
	run sql "SELECT n, kind, status, outcome, ms IS NOT NULL, ms >= 0,
	    error IS NULL, response, retry_after IS NULL, count(*)
	    FROM attempts GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9"
	assert_output '1|first|200|delivered|1|1|1|{"ok":true}|1|5'
	run sql "SELECT state, attempts, delivered_at IS NOT NULL,
	    delivered_at >= last_attempt_at, last_status, last_error IS NULL,
	    next_at IS NULL, not_before IS NULL, lease_until IS NULL,
	    lease_owner IS NULL, count(*) FROM webhooks GROUP BY 1, 2, 3, 4, 5,
	    6, 7, 8, 9, 10"
	assert_output 'delivered|1|1|1|200|1|1|1|1|1|5'
	# Each attempt's started_at is its webhook's last_attempt_at.
	run sql "SELECT count(*) FROM attempts a JOIN webhooks w
	    ON w.seq = a.webhook_seq WHERE a.started_at = w.last_attempt_at
	    AND a.endpoint_id = w.endpoint_id"
	assert_output 5
	# The receiver: one POST per webhook, with the webhook's id.
	received | jq -r .id | sort >got
	run diff got stored
	assert_success
	run eval 'received | jq -c "[.method, .ct, .ua, .sig, .sigs, .status]" | sort | uniq -c | tr -s " "'
	assert_output " 5 [\"POST\",\"application/json\",\"whk/$version\",true,1,200]"
	run eval 'received | jq -c "[.path, .headers]" | sort'
	assert_output '["/ok",{"x-tenant":"acme","x-source":"whk tests"}]
["/ok",{"x-tenant":"acme","x-source":"whk tests"}]
["/ok?bulk",{}]
["/ok?shaped",{}]
["/ok?shaped",{}]'
	run eval 'received | bodycheck'
	assert_output "5 ok"
	# The three kinds of body were all there.
	run sql "SELECT group_concat(DISTINCT body_kind) FROM
	    (SELECT body_kind FROM webhooks ORDER BY body_kind)"
	assert_output "0,1,2"
	# webhook-timestamp: the Unix time it was sent.
	run eval "received | jq '(.timestamp | tonumber) as \$t |
	    \$t >= $t0 and \$t <= $t1 and (.timestamp | test(\"^[0-9]+\$\"))' | sort -u"
	assert_output true
}

@test "webhook-timestamp is when the request started, also for claims that waited in reserve" {
	receiver_start
	ep r '/slow?ms=1100' --concurrency 1
	hooks r 6 >recs
	run --separate-stderr whk-deliver <recs
	assert_success
	[ "${#lines[@]}" -eq 6 ]
	# Once one answered, it held claims in reserve, for seconds.  Yet
	# each request reached the receiver in the second it was signed in,
	# or the next one when the second turned in between, and was signed
	# for that time.
	run eval 'received | jq "(.t | floor) - (.timestamp | tonumber) | . == 0 or . == 1" | sort -u'
	assert_output true
	run eval 'received | sigcheck "$(sql "SELECT secret FROM endpoints")"'
	assert_output "6 ok"
}

@test "bodies of any size go at once: no request waits for \"100 Continue\"" {
	receiver_start
	ep a /ok
	# Under 1 KiB, over it, and over 1 MiB: curl's thresholds.
	big=$(head -c 1100000 /dev/zero | tr '\0' x)
	for n in 10 1500 1100000; do
		printf '{"id":"e%d","tenant":"a","pad":"%s"}\n' "$n" "${big:0:n}"
	done | whk-ingest --max-bytes 2M | whk-batch >recs
	run --separate-stderr whk-deliver <recs
	assert_success
	[ "${#lines[@]}" -eq 3 ]
	run eval 'received | jq -sc "sort_by(.bytes)[] | [.bytes, .expect, .status]"'
	assert_output $'[44,false,200]\n[1536,false,200]\n[1100039,false,200]'
}

@test "the endpoint's headers follow ours, in their order; its own User-Agent replaces ours" {
	receiver_start
	ep a /ok --header 'X-B: 2' --header 'User-Agent: acme-hooks/2' \
	    --header 'X-A: one, two'
	hooks a 1 >recs
	run whk-deliver <recs
	assert_success
	run eval 'received | jq -c "[.ua, .ct, .headers]"'
	assert_output '["acme-hooks/2","application/json",{"x-b":"2","x-a":"one, two"}]'
}

@test "signatures verify independently: Python's hmac over id.timestamp.body with the base64-decoded secret" {
	S=$(secret_of 32)
	receiver_start --secret "$S"
	ep a /ok --secret "$S"
	S2=$(secret_of 64)
	ep b /ok --secret "$S2"
	{
		hooks a 3
		hooks b 2
	} >recs
	# A body with characters that need care.
	printf '%s\n' '{"id":"u","tenant":"a","s":"\u00e9\u2713 \"\\ é"}' |
	    whk-ingest | whk-batch >>recs
	run whk-deliver <recs
	assert_success
	[ "${#lines[@]}" -eq 6 ]
	run eval 'received | jq -r .signature | grep -Ec "^v1,[A-Za-z0-9+/]{43}=\$"'
	assert_output 6
	a=$(sql "SELECT w.id FROM webhooks w JOIN endpoints e ON e.id = w.endpoint_id WHERE e.name = 'a'")
	run eval "received | jq -c 'select(.id | IN(\$ARGS.positional[]))' --args $(echo $a) | sigcheck '$S'"
	assert_output "4 ok"
	run eval "received | jq -c 'select(.id | IN(\$ARGS.positional[]) | not)' --args $(echo $a) | sigcheck '$S2'"
	assert_output "2 ok"
	# The check itself tells a wrong key.
	run eval "received | jq -c 'select(.id | IN(\$ARGS.positional[]))' --args $(echo $a) | sigcheck '$S2'"
	refute_output "4 ok"
	assert_output --partial "got 'v1,"
	# The receiver agrees only for the endpoint whose secret it was given.
	run eval 'received | jq -c "[.id, .sig]" | sort | jq -r ".[1]" | sort | uniq -c | tr -s " "'
	assert_output $' 2 false\n 4 true'
}

@test "secret rotation: two v1 signatures during the grace, new secret first; one after it" {
	OLD=$(secret_of 32)
	NEW=$(secret_of 24)
	receiver_start --secret "$OLD"
	ep a /ok --secret "$OLD"
	hooks a 1 >before
	run whk-deliver <before
	assert_success
	run eval "received | sigcheck '$OLD'"
	assert_output "1 ok"
	whk-endpoint rotate-secret a --secret "$NEW" --grace 1h >/dev/null
	hooks a 2 >during
	run whk-deliver <during
	assert_success
	[ "${#lines[@]}" -eq 2 ]
	run eval "received | tail -n 2 | sigcheck '$NEW' '$OLD'"
	assert_output "2 ok"
	run eval 'received | jq -r .sigs'
	assert_output $'1\n2\n2'
	# After the grace, the old secret signs nothing.
	hooks a 1 >after
	WHK_NOW=$(($(date +%s) + 3601)) run whk-deliver <after
	assert_success
	run eval "received | tail -n 1 | sigcheck '$NEW'"
	assert_output "1 ok"
	# (This receiver knows only the old secret.)
	run eval 'received | jq -c "[.sigs, .sig]"'
	assert_output $'[1,true]\n[2,true]\n[2,true]\n[1,false]'
}

@test "a secret damaged in the store: that endpoint's webhooks are left pending, unsent and unclaimed; the others are delivered; exit 1" {
	receiver_start
	ep a /ok
	ep b /ok
	{ hooks a 2; hooks b 2; } >recs
	sql "UPDATE endpoints SET secret = 'whsec_!!' WHERE name = 'a'"
	run --separate-stderr whk-deliver <recs
	assert_failure 1
	assert_equal "$stderr" "whk-deliver: endpoint 'a': invalid secret; its webhooks are left pending"
	run jq -r '[.endpoint, .outcome] | @tsv' <<<"$output"
	assert_output $'b\tdelivered\nb\tdelivered'
	assert_equal "$(received | jq -r .path | sort | uniq -c | tr -s ' ')" " 2 /ok"
	assert_equal "$(leased)" 0
	run sql "SELECT e.name, w.state, w.attempts, count(*) FROM webhooks w
	    JOIN endpoints e ON e.id = w.endpoint_id GROUP BY 1, 2, 3 ORDER BY 1"
	assert_output $'a|pending|0|2\nb|delivered|1|2'
	# --pending too; and once the secret is set right, they go.
	run --separate-stderr whk-deliver --pending </dev/null
	assert_failure 1
	assert_output ""
	assert_equal "$stderr" "whk-deliver: endpoint 'a': invalid secret; its webhooks are left pending"
	whk-endpoint rotate-secret a --grace 0s >/dev/null
	run --separate-stderr whk-deliver --pending </dev/null
	assert_success
	[ "${#lines[@]}" -eq 2 ]
}

# --- outcomes --------------------------------------------------------------

@test "HTTP failures: 500, 404 and a 302 (never followed) are failed attempts; the run's other webhooks are delivered; exit 1" {
	receiver_start
	ep broken /fail
	ep missing /status/404
	ep moved /redirect
	ep fine /ok
	{
		hooks broken 1
		hooks missing 1
		hooks moved 1
		hooks fine 3
	} >recs
	run --separate-stderr whk-deliver <recs
	assert_failure 1
	[ -z "$stderr" ]
	[ "${#lines[@]}" -eq 6 ]
	like "$(line_of broken)" '{"webhook":"@MSG@","endpoint":"broken","attempt":1,"kind":"first","status":500,"ms":@N@,"outcome":"failed","error":"HTTP 500"}'
	like "$(line_of missing)" '{"webhook":"@MSG@","endpoint":"missing","attempt":1,"kind":"first","status":404,"ms":@N@,"outcome":"failed","error":"HTTP 404"}'
	like "$(line_of moved)" '{"webhook":"@MSG@","endpoint":"moved","attempt":1,"kind":"first","status":302,"ms":@N@,"outcome":"failed","error":"HTTP 302"}'
	run eval 'line_of fine | jq -r .outcome'
	assert_output $'delivered\ndelivered\ndelivered'
	run attempts_of moved
	assert_output "1|first|302|failed|HTTP 302"
	run attempts_of fine
	assert_output $'1|first|200|delivered|\n1|first|200|delivered|\n1|first|200|delivered|'
	# Failed webhooks wait for the slow lane, unscheduled: whk-retry
	# gives them their next time.
	run sql "SELECT e.name, w.state, w.attempts, w.last_status, w.last_error,
	    w.delivered_at IS NULL, w.lease_until IS NULL, w.next_at IS NULL
	    FROM webhooks w JOIN endpoints e ON e.id = w.endpoint_id
	    WHERE w.state != 'delivered' ORDER BY e.name"
	assert_output "broken|failed|1|500|HTTP 500|1|1|1
missing|failed|1|404|HTTP 404|1|1|1
moved|failed|1|302|HTTP 302|1|1|1"
	# The redirect was not followed: /ok saw only fine's webhooks.
	run eval 'received | jq -r .path | sort | uniq -c | tr -s " "'
	assert_output $' 1 /fail\n 3 /ok\n 1 /redirect\n 1 /status/404'
	received | jq -r 'select(.path == "/ok") | .id' | sort >got
	sql "SELECT w.id FROM webhooks w JOIN endpoints e ON e.id = w.endpoint_id
	    WHERE e.name = 'fine' ORDER BY w.id" >want
	run diff got want
	assert_success
}

@test "transport failures: garbage, reset, no answer within --timeout 1s, a closed port: failed, no status, clear errors; the rest delivered" {
	receiver_start
	ep garbage /garbage
	ep reset /reset
	ep silent /never --timeout 1s
	ep fine /ok
	port=$(free_port)
	whk-endpoint add closed "http://127.0.0.1:$port/ok" --allow-private \
	    --tenant closed >/dev/null
	{
		hooks garbage 1
		hooks reset 1
		hooks silent 1
		hooks closed 1
		hooks fine 2
	} >recs
	run --separate-stderr whk-deliver <recs
	assert_failure 1
	[ -z "$stderr" ]
	[ "${#lines[@]}" -eq 6 ]
	like "$(line_of garbage)" '{"webhook":"@MSG@","endpoint":"garbage","attempt":1,"kind":"first","status":null,"ms":@N@,"outcome":"failed","error":"@ANY@HTTP/0.9@ANY@"}'
	like "$(line_of reset)" '{"webhook":"@MSG@","endpoint":"reset","attempt":1,"kind":"first","status":null,"ms":@N@,"outcome":"failed","error":"Recv failure: Connection reset by peer"}'
	like "$(line_of silent)" '{"webhook":"@MSG@","endpoint":"silent","attempt":1,"kind":"first","status":null,"ms":@N@,"outcome":"failed","error":"timed out after @N@ ms waiting for the response"}'
	like "$(line_of closed)" "{\"webhook\":\"@MSG@\",\"endpoint\":\"closed\",\"attempt\":1,\"kind\":\"first\",\"status\":null,\"ms\":@N@,\"outcome\":\"failed\",\"error\":\"Failed to connect to 127.0.0.1 port $port after @N@ ms: Connection refused\"}"
	[ "$(line_of silent | jq .ms)" -ge 1000 ]
	[ "$(line_of silent | jq .ms)" -lt 3000 ]
	run eval 'line_of fine | jq -r .outcome'
	assert_output $'delivered\ndelivered'
	# Recorded alike: no status, the error, state failed, nothing leased.
	run sql "SELECT e.name, a.status IS NULL, a.outcome, a.ms IS NOT NULL,
	    w.state, w.last_error = a.error, w.next_at IS NULL,
	    w.lease_until IS NULL FROM attempts a
	    JOIN webhooks w ON w.seq = a.webhook_seq
	    JOIN endpoints e ON e.id = a.endpoint_id
	    WHERE e.name != 'fine' ORDER BY e.name"
	assert_output "closed|1|failed|1|failed|1|1|1
garbage|1|failed|1|failed|1|1|1
reset|1|failed|1|failed|1|1|1
silent|1|failed|1|failed|1|1|1"
	run sql "SELECT count(*) FROM attempts WHERE error LIKE 'timed out after %'"
	assert_output 1
	# Each request reached the receiver (a reset on a reused connection
	# may be sent once more by libcurl, on a fresh one).
	run eval 'received | jq -r .path | sort -u'
	assert_output $'/garbage\n/never\n/ok\n/reset'
	run eval 'received | jq -r "select(.path != \"/reset\") | .path" | sort | uniq -c | tr -s " "'
	assert_output $' 1 /garbage\n 1 /never\n 2 /ok'
}

@test "a huge answer: read up to 1 MiB, then hung up; 16 KiB of it kept; a 2xx is still a delivery" {
	receiver_start
	ep huge '/huge?bytes=5000000'
	ep big '/huge?bytes=100000'
	ep fine /ok
	{
		hooks huge 1
		hooks big 1
		hooks fine 1
	} >recs
	run --separate-stderr whk-deliver <recs
	assert_success
	[ -z "$stderr" ]
	like "$(line_of huge)" '{"webhook":"@MSG@","endpoint":"huge","attempt":1,"kind":"first","status":200,"ms":@N@,"outcome":"delivered","error":"response over 1048576 bytes: connection dropped"}'
	like "$(line_of big)" '{"webhook":"@MSG@","endpoint":"big","attempt":1,"kind":"first","status":200,"ms":@N@,"outcome":"delivered","error":null}'
	like "$(line_of fine)" '{"webhook":"@MSG@","endpoint":"fine","attempt":1,"kind":"first","status":200,"ms":@N@,"outcome":"delivered","error":null}'
	run sql "SELECT e.name, a.status, a.outcome, length(CAST(a.response AS BLOB)),
	    w.state FROM attempts a JOIN webhooks w ON w.seq = a.webhook_seq
	    JOIN endpoints e ON e.id = a.endpoint_id ORDER BY e.name"
	assert_output $'big|200|delivered|16384|delivered\nfine|200|delivered|11|delivered\nhuge|200|delivered|16384|delivered'
}

@test "410 Gone disables the endpoint with a reason; its other queued webhooks are not sent, and wait for it" {
	receiver_start
	ep gone /status/410 --concurrency 1
	ep fine /ok
	{
		hooks gone 4
		hooks fine 2
	} >recs
	run --separate-stderr whk-deliver <recs
	assert_failure 1
	assert_equal "$stderr" "whk-deliver: endpoint 'gone' disabled: the receiver answered 410 Gone"
	[ "${#lines[@]}" -eq 3 ]
	like "$(line_of gone)" '{"webhook":"@MSG@","endpoint":"gone","attempt":1,"kind":"first","status":410,"ms":@N@,"outcome":"failed","error":"HTTP 410"}'
	first=$(line_of gone | jq -r .webhook)
	run sql "SELECT disabled_at IS NOT NULL, disabled_reason FROM endpoints WHERE name = 'gone'"
	assert_output "1|410 Gone from the receiver (webhook $first)"
	run eval 'whk-endpoint show gone | jq -c "[.state, .disabled_reason]"'
	assert_output "[\"disabled\",\"410 Gone from the receiver (webhook $first)\"]"
	run eval 'received | jq -r .path | sort | uniq -c | tr -s " "'
	assert_output $' 2 /ok\n 1 /status/410'
	# The three others: untouched, never attempted, not leased.
	run sql "SELECT w.state, w.attempts, w.lease_until IS NULL, count(*)
	    FROM webhooks w JOIN endpoints e ON e.id = w.endpoint_id
	    WHERE e.name = 'gone' AND w.id != '$first' GROUP BY 1, 2, 3"
	assert_output "pending|0|1|3"
	# Not while it is disabled, --pending or not.
	run --separate-stderr whk-deliver --pending </dev/null
	assert_success
	assert_output ""
	run --separate-stderr whk-deliver <recs
	assert_success
	assert_output ""
	assert_equal "$(received | wc -l)" 3
	# Enabled again (and fixed): the first-attempt lane sends them.
	whk-endpoint set gone --url "$RECEIVER/ok" >/dev/null
	whk-endpoint enable gone >/dev/null
	run --separate-stderr whk-deliver --pending </dev/null
	assert_success
	[ "${#lines[@]}" -eq 3 ]
	refute_output --partial "$first"
}

@test "410 Gone in a long run: the endpoint enabled again (and fixed) is sent to again by the same run" {
	receiver_start
	ep gone /status/410 --concurrency 1
	mkfifo input
	exec 5<>input
	whk-deliver <input >out 2>err 3>&- 5>&- &
	pid=$!
	hooks gone 1 >&5
	wait_sql "SELECT disabled_at IS NOT NULL FROM endpoints WHERE name = 'gone'" 1
	whk-endpoint set gone --url "$RECEIVER/ok" >/dev/null
	whk-endpoint enable gone >/dev/null
	# The run looks at its endpoints again each second; what comes after
	# it noticed is sent.
	sleep 2.5
	hooks gone 3 >&5
	wait_sql "SELECT count(*) FROM webhooks WHERE state = 'delivered'" 3
	exec 5>&-
	status=0
	wait "$pid" || status=$?
	assert_equal "$status" 1
	assert_equal "$(cat err)" "whk-deliver: endpoint 'gone' disabled: the receiver answered 410 Gone"
	run jq -r '[.attempt, .status, .outcome] | @tsv' out
	assert_output $'1\t410\tfailed\n1\t200\tdelivered\n1\t200\tdelivered\n1\t200\tdelivered'
	run eval 'received | jq -r .path | sort | uniq -c | tr -s " "'
	assert_output $' 3 /ok\n 1 /status/410'
}

@test "410 Gone during --pending: enabled again while the run goes on, every one of its webhooks is sent by that run" {
	receiver_start
	ep gone /status/410 --concurrency 1
	ep busy '/slow?ms=300' --concurrency 1
	hooks gone 4 >/dev/null
	hooks busy 12 >/dev/null
	whk-deliver --pending </dev/null >out 2>err 3>&- &
	pid=$!
	wait_sql "SELECT disabled_at IS NOT NULL FROM endpoints WHERE name = 'gone'" 1
	whk-endpoint set gone --url "$RECEIVER/ok" >/dev/null
	whk-endpoint enable gone >/dev/null
	status=0
	wait "$pid" || status=$?
	assert_equal "$status" 1
	run eval "jq -r 'select(.endpoint == \"gone\") | .status' out | sort | uniq -c | tr -s ' '"
	assert_output $' 3 200\n 1 410'
	run sql "SELECT state, count(*) FROM webhooks GROUP BY 1 ORDER BY 1"
	assert_output $'delivered|15\nfailed|1'
}

@test "Retry-After on 429 and 503 is recorded (retry_after, not_before) and heeded when whk-retry schedules; other statuses ignore it" {
	receiver_start
	ep slowdown '/retry-after?s=120&status=429'
	ep busy '/retry-after?s=90&status=503&date=1'
	ep broken '/retry-after?s=120&status=500'
	{
		hooks slowdown 1
		hooks busy 1
		hooks broken 1
	} >recs
	ep greedy '/retry-after?s=8640000&status=429'
	hooks greedy 1 >greedy.recs
	now=$(date +%s)
	WHK_NOW=$now run --separate-stderr whk-deliver <recs
	assert_failure 1
	[ -z "$stderr" ]
	like "$(line_of slowdown)" "{\"webhook\":\"@MSG@\",\"endpoint\":\"slowdown\",\"attempt\":1,\"kind\":\"first\",\"status\":429,\"ms\":@N@,\"outcome\":\"failed\",\"error\":\"HTTP 429\",\"retry_after\":\"$(iso $((now + 120)))\"}"
	like "$(line_of busy)" '{"webhook":"@MSG@","endpoint":"busy","attempt":1,"kind":"first","status":503,"ms":@N@,"outcome":"failed","error":"HTTP 503","retry_after":"@TS@"}'
	like "$(line_of broken)" '{"webhook":"@MSG@","endpoint":"broken","attempt":1,"kind":"first","status":500,"ms":@N@,"outcome":"failed","error":"HTTP 500"}'
	run sql "SELECT e.name, a.retry_after - $now * 1000, w.not_before = a.retry_after,
	    w.next_at IS NULL FROM attempts a
	    JOIN webhooks w ON w.seq = a.webhook_seq
	    JOIN endpoints e ON e.id = a.endpoint_id WHERE e.name = 'slowdown'"
	assert_output "slowdown|120000|1|1"
	# An HTTP-date: about 90 s from now, by the receiver's clock.
	run sql "SELECT a.retry_after - $now * 1000 BETWEEN 85000 AND 95000,
	    w.not_before = a.retry_after, w.next_at IS NULL
	    FROM attempts a JOIN webhooks w ON w.seq = a.webhook_seq
	    JOIN endpoints e ON e.id = a.endpoint_id WHERE e.name = 'busy'"
	assert_output "1|1|1"
	run sql "SELECT a.retry_after IS NULL, w.not_before IS NULL
	    FROM attempts a JOIN webhooks w ON w.seq = a.webhook_seq
	    JOIN endpoints e ON e.id = a.endpoint_id WHERE e.name = 'broken'"
	assert_output "1|1"
	# A pause of 100 days is heeded for one day.
	WHK_NOW=$now run --separate-stderr whk-deliver <greedy.recs
	assert_failure 1
	like "$output" "{\"webhook\":\"@MSG@\",\"endpoint\":\"greedy\",\"attempt\":1,\"kind\":\"first\",\"status\":429,\"ms\":@N@,\"outcome\":\"failed\",\"error\":\"HTTP 429\",\"retry_after\":\"$(iso $((now + 86400)))\"}"
	# Fed again, nothing is due: none was scheduled yet.
	WHK_NOW=$((now + 60)) run --separate-stderr whk-deliver -v <recs
	assert_success
	assert_output ""
	assert_equal "$stderr" "whk-deliver: 0 attempts: 0 delivered, 0 failed; 3 skipped (delivered, taken by another deliverer, not due or endpoint disabled)"
	# Scheduled, the 500 goes after its 5 s; the others not before
	# their Retry-After.
	WHK_NOW=$((now + 60)) run --separate-stderr eval 'whk-retry | whk-deliver'
	assert_failure 1
	like "$output" '{"webhook":"@MSG@","endpoint":"broken","attempt":2,"kind":"retry","status":500,"ms":@N@,"outcome":"failed","error":"HTTP 500"}'
	WHK_NOW=$((now + 119)) run --separate-stderr whk-retry --dry-run
	assert_success
	refute_output --partial slowdown
	WHK_NOW=$((now + 121)) run --separate-stderr eval 'whk-retry | whk-deliver'
	assert_failure 1
	run eval 'jq -r "select(.endpoint != \"broken\") | [.endpoint, .attempt, .kind] | @tsv" <<<"$output" | sort'
	assert_output $'busy\t2\tretry\nslowdown\t2\tretry'
}

@test "a failure is left failed and unscheduled for whk-retry: fed again, even much later, it is not due; never dead by whk-deliver" {
	receiver_start
	ep broken /fail
	hooks broken 1 >recs
	now=$(date +%s)
	WHK_NOW=$now run whk-deliver <recs
	assert_failure 1
	like "$output" '{"webhook":"@MSG@","endpoint":"broken","attempt":1,"kind":"first","status":500,"ms":@N@,"outcome":"failed","error":"HTTP 500"}'
	run sql "SELECT state, attempts, next_at IS NULL, lease_until IS NULL FROM webhooks"
	assert_output "failed|1|1|1"
	WHK_NOW=$((now + 200 * 86400)) run --separate-stderr whk-deliver -v <recs
	assert_success
	assert_output ""
	assert_equal "$stderr" "whk-deliver: 0 attempts: 0 delivered, 0 failed; 1 skipped (delivered, taken by another deliverer, not due or endpoint disabled)"
	assert_equal "$(received | wc -l)" 1
	# Once it has a time, and the time came, it goes as a retry.
	sql "UPDATE webhooks SET next_at = $(((now + 10) * 1000))"
	WHK_NOW=$((now + 9)) run whk-deliver <recs
	assert_success
	assert_output ""
	WHK_NOW=$((now + 10)) run whk-deliver <recs
	assert_failure 1
	like "$output" '{"webhook":"@MSG@","endpoint":"broken","attempt":2,"kind":"retry","status":500,"ms":@N@,"outcome":"failed","error":"HTTP 500"}'
	run sql "SELECT state, attempts, next_at IS NULL FROM webhooks"
	assert_output "failed|2|1"
}

# --- destinations ----------------------------------------------------------

@test "a host name that resolves to loopback is refused at connect time without --allow-private; with it, delivered" {
	host=$(hostname)
	addr=$(getent ahostsv4 "$host" | awk '{ print $1; exit }')
	case $addr in
	127.*) ;;
	*) skip "'$host' does not resolve to a loopback address here ($addr)" ;;
	esac
	# A name is judged after DNS; 'localhost' is refused at once.
	run whk-endpoint add l "http://localhost:1/ok"
	assert_failure 2
	assert_output --partial "(use --allow-private to permit it)"
	receiver_start --bind "$addr"
	whk-endpoint add named "http://$host:${RECEIVER##*:}/ok" --tenant named >/dev/null
	run sql "SELECT allow_private FROM endpoints WHERE name = 'named'"
	assert_output 0
	hooks named 1 >recs
	run --separate-stderr whk-deliver <recs
	assert_failure 1
	like "$output" "{\"webhook\":\"@MSG@\",\"endpoint\":\"named\",\"attempt\":1,\"kind\":\"first\",\"status\":null,\"ms\":@N@,\"outcome\":\"failed\",\"error\":\"refused to connect to $addr: a private, loopback or link-local address (the endpoint needs --allow-private)\"}"
	assert_equal "$(received | wc -l)" 0
	whk-endpoint set named --allow-private >/dev/null
	# whk-retry schedules the failure; an hour on, it is due.
	later=$(($(date +%s) + 3600))
	WHK_NOW=$later whk-retry >/dev/null
	WHK_NOW=$later run --separate-stderr whk-deliver <recs
	assert_success
	like "$output" '{"webhook":"@MSG@","endpoint":"named","attempt":2,"kind":"retry","status":200,"ms":@N@,"outcome":"delivered","error":null}'
	assert_equal "$(received | jq -r .id)" "$(jq -r .webhook recs)"
}

# --- concurrency, caps and rates -------------------------------------------

@test "40 webhooks to a slow receiver overlap, up to --concurrency" {
	receiver_start
	ep wide '/slow?ms=300' --concurrency 20
	hooks wide 40 >recs
	run --separate-stderr whk-deliver --concurrency 20 <recs
	assert_success
	[ "${#lines[@]}" -eq 40 ]
	max=$(max_inflight)
	echo "at most $max in flight"
	[ "$max" -ge 10 ]
	[ "$max" -le 20 ]
	run eval 'received | jq -r .id | sort -u | wc -l'
	assert_output 40
}

@test "an endpoint's --concurrency caps its own requests only; whk-deliver --concurrency caps them all" {
	receiver_start
	A=$RECEIVER
	ALOG=$RECEIVER_LOG
	receiver_start
	B=$RECEIVER
	BLOG=$RECEIVER_LOG
	whk-endpoint add capped "$A/slow?ms=200" --allow-private --tenant capped \
	    --concurrency 2 >/dev/null
	whk-endpoint add wide "$B/slow?ms=200" --allow-private --tenant wide \
	    --concurrency 20 >/dev/null
	{
		hooks capped 10
		hooks wide 20
	} >recs
	run --separate-stderr whk-deliver --concurrency 20 <recs
	assert_success
	[ "${#lines[@]}" -eq 30 ]
	echo "capped: $(max_inflight "$ALOG"), wide: $(max_inflight "$BLOG")"
	[ "$(max_inflight "$ALOG")" -eq 2 ]
	[ "$(max_inflight "$BLOG")" -ge 5 ]
	# The total cap.
	hooks wide 12 >recs2
	run --separate-stderr whk-deliver --concurrency 3 <recs2
	assert_success
	[ "${#lines[@]}" -eq 12 ]
	max=$(received "$BLOG" | tail -n 12 | jq -s 'map(.inflight) | max')
	echo "wide under -c 3: $max"
	[ "$max" -le 3 ]
	[ "$max" -ge 2 ]
}

@test "a receiver that never answers holds only its own slots: the other endpoint's webhooks are all sent meanwhile" {
	receiver_start
	ep stuck /never --timeout 2s --concurrency 4
	ep fine /ok
	{
		hooks stuck 4
		hooks fine 30
	} >recs
	run --separate-stderr whk-deliver --concurrency 8 <recs
	assert_failure 1
	run sql "SELECT e.name, a.outcome, count(*) FROM attempts a
	    JOIN endpoints e ON e.id = a.endpoint_id GROUP BY 1, 2 ORDER BY 1"
	assert_output $'fine|delivered|30\nstuck|failed|4'
	# By the store's clock: every /ok attempt ended before the first
	# /never attempt timed out.  (The times, should it fail.)
	sql "SELECT e.name, a.started_at, a.ms, a.outcome, a.error
	    FROM attempts a JOIN endpoints e ON e.id = a.endpoint_id
	    ORDER BY a.started_at"
	run sql "SELECT (SELECT max(a.started_at + a.ms) FROM attempts a
	    JOIN endpoints e ON e.id = a.endpoint_id WHERE e.name = 'fine') <
	    (SELECT min(a.started_at + a.ms) FROM attempts a
	    JOIN endpoints e ON e.id = a.endpoint_id WHERE e.name = 'stuck')"
	assert_output 1
	# Each /never attempt ran its whole 2 s.  libcurl counts the timeout
	# from when the transfer was added, its total time from a moment
	# later: the time it reports can fall short of 2000 ms by a hair.
	run sql "SELECT min(a.ms) >= 1990, count(*) FROM attempts a
	    JOIN endpoints e ON e.id = a.endpoint_id WHERE e.name = 'stuck'
	    AND a.error LIKE 'timed out%'"
	assert_output '1|4'
}

@test "--rate 5: ten webhooks take about a second (first to last request at least 0.8 s apart)" {
	receiver_start
	ep limited /ok --rate 5
	hooks limited 10 >recs
	run --separate-stderr whk-deliver <recs
	assert_success
	[ "${#lines[@]}" -eq 10 ]
	run eval "received | jq -s '(map(.t) | max) - (map(.t) | min)'"
	echo "span: $output s"
	run eval "received | jq -s '(map(.t) | max) - (map(.t) | min) >= 0.8'"
	assert_output true
}

@test "waiting for a slot or for --rate never counts against a request's timeout" {
	receiver_start
	ep one '/slow?ms=700' --timeout 1s --concurrency 1
	ep paced '/slow?ms=300' --timeout 1s --rate 2
	{
		hooks one 4
		hooks paced 6
	} >recs
	run --separate-stderr whk-deliver <recs
	assert_success
	[ "${#lines[@]}" -eq 10 ]
	# Each waited longer than its timeout in all, and none timed out.
	run eval "received | jq -s 'group_by(.path) | map((map(.t) | max) - (map(.t) | min) > 1.5) | unique'"
	assert_output $'[\n  true\n]'
	run sql "SELECT outcome, count(*), max(ms) < 1000 FROM attempts GROUP BY 1"
	assert_output "delivered|10|1"
}

@test "https: the receiver's certificate is verified, against CURL_CA_BUNDLE or SSL_CERT_FILE when given; HTTP/2 where the receiver offers it" {
	# Only the system's authorities, unless a step below says otherwise.
	unset CURL_CA_BUNDLE SSL_CERT_FILE SSL_CERT_DIR
	selfsigned .
	mkdir www
	: >www/hook
	port=$(free_port)
	# An HTTP/2 server over TLS that answers a POST with its body.
	nghttpd --echo-upload -v -d www "$port" key.pem cert.pem \
	    </dev/null >h2.log 2>&1 3>&- &
	echo "$!" >>"$BATS_TEST_TMPDIR/receivers"
	wait_port "$port"
	whk-endpoint add h "https://127.0.0.1:$port/hook" --allow-private \
	    --tenant h >/dev/null
	# A certificate nobody vouches for: failed, nothing sent over it.
	hooks h 2 >recs
	run --separate-stderr whk-deliver <recs
	assert_failure 1
	run eval "jq -r '[.status, .error] | @tsv' <<<\"\$output\" | sort -u"
	assert_output $'\tSSL certificate problem: self-signed certificate'
	# Vouched for, either way.
	hooks h 4 >recs
	SSL_CERT_FILE=$PWD/cert.pem run --separate-stderr whk-deliver <recs
	assert_success
	[ "${#lines[@]}" -eq 4 ]
	hooks h 2 >recs
	CURL_CA_BUNDLE=$PWD/cert.pem run --separate-stderr whk-deliver <recs
	assert_success
	[ "${#lines[@]}" -eq 2 ]
	# Over HTTP/2 (pseudo-headers, streams), with our headers, the
	# answer read back: each delivered attempt kept its own body.
	assert_equal "$(grep -c 'recv (stream_id=[0-9]*) :method: POST' h2.log)" 6
	assert_equal "$(grep -c 'recv (stream_id=[0-9]*) user-agent: whk/' h2.log)" 6
	assert_equal "$(grep -c 'recv (stream_id=[0-9]*) webhook-signature: v1,' h2.log)" 6
	run sql "SELECT count(*) FROM attempts a JOIN webhooks w
	    ON w.seq = a.webhook_seq JOIN events e ON e.seq = w.event_seqs ->> 0
	    WHERE a.outcome = 'delivered' AND a.status = 200
	    AND a.response = CAST(e.body AS TEXT)"
	assert_output 6
}

@test "endpoints reloaded while a request is still connecting: the request keeps its headers whole" {
	unset CURL_CA_BUNDLE SSL_CERT_FILE SSL_CERT_DIR
	selfsigned .
	port=$(free_port)
	# A TLS server that takes 2.5 s to shake hands, then logs the
	# request's head and answers 200.
	py -c '
import socket, ssl, sys, threading, time
port, cert, key, log = sys.argv[1:5]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
def serve(c):
    try:
        time.sleep(2.5)
        t = ctx.wrap_socket(c, server_side=True)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = t.recv(65536)
            if not chunk:
                return
            data += chunk
        with open(log, "ab") as f:
            f.write(data.partition(b"\r\n\r\n")[0] + b"\n\n")
        t.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n"
            b"Connection: close\r\n\r\n")
        t.close()
    except OSError:
        c.close()
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(port)))
s.listen(8)
while True:
    threading.Thread(target=serve, args=(s.accept()[0],), daemon=True).start()' "$port" cert.pem key.pem slow.log </dev/null >slow.err 2>&1 3>&- &
	echo "$!" >>"$BATS_TEST_TMPDIR/receivers"
	wait_port "$port"
	whk-endpoint add s "https://127.0.0.1:$port/hook" --allow-private \
	    --tenant s --header 'X-Token: abcdef0123456789' \
	    --header 'X-Other: two' >/dev/null
	hooks s 1 >recs
	SSL_CERT_FILE=$PWD/cert.pem whk-deliver <recs >out 2>err 3>&- &
	pid=$!
	wait_sql "SELECT lease_owner IS NOT NULL FROM webhooks" 1
	# While it connects: every endpoint is loaded again, headers too.
	whk-endpoint add other https://example.com/hook >/dev/null
	whk-endpoint set s --header 'X-Other: three' >/dev/null
	status=0
	wait "$pid" || status=$?
	assert_equal "$status: $(cat err)" "0: "
	run grep -ci '^x-' slow.log
	assert_output 2
	run grep -i '^x-' slow.log
	assert_output $'X-Token: abcdef0123456789\r\nX-Other: two\r'
}

@test "connections are kept alive and reused: one per slot, not one per request" {
	receiver_start
	ep one /ok --concurrency 1
	ep four '/slow?ms=20' --concurrency 4
	hooks one 10 >recs
	run --separate-stderr whk-deliver <recs
	assert_success
	run eval "received | jq -r .conn | sort -u | wc -l"
	assert_output 1
	hooks four 24 >recs
	run --separate-stderr whk-deliver <recs
	assert_success
	run eval "received | jq -r 'select(.path != \"/ok\") | .conn' | sort -u | wc -l"
	echo "connections for 24 requests, 4 at a time: $output"
	[ "$output" -ge 2 ] && [ "$output" -le 4 ]
}

@test "fail-first k=3: failed three times through the retry lane, delivered on the fourth attempt, the same webhook-id each time" {
	receiver_start
	ep f '/fail-first?k=3' --schedule '1m*5'
	hooks f 1 >recs
	id=$(jq -r .webhook recs)
	run whk-deliver <recs
	assert_failure 1
	t=$(date +%s)
	for k in 1 2 3; do
		t=$((t + 120))
		WHK_NOW=$t run --separate-stderr sh -c 'whk-retry | whk-deliver'
		[ "$k" -lt 3 ] && assert_failure 1 || assert_success
	done
	run sql "SELECT n, kind, status, outcome FROM attempts ORDER BY n"
	assert_output $'1|first|500|failed\n2|retry|500|failed\n3|retry|500|failed\n4|retry|200|delivered'
	run eval 'received | jq -r "[.id, .attempt, .status] | @tsv"'
	assert_output "$id	1	500
$id	2	500
$id	3	500
$id	4	200"
}

# --- selecting work --------------------------------------------------------

@test "--pending takes only webhooks never attempted; a second run finds nothing" {
	receiver_start
	ep a /ok
	ep f /fail
	hooks a 4 >a.recs
	hooks f 2 >f.recs
	head -n 1 a.recs >first
	run whk-deliver <first
	assert_success
	run whk-deliver <f.recs
	assert_failure 1
	assert_equal "$(received | wc -l)" 3
	# Even long after the failures are due again.
	WHK_NOW=$(($(date +%s) + 86400)) run --separate-stderr whk-deliver --pending -v </dev/null
	assert_success
	[ "${#lines[@]}" -eq 3 ]
	assert_equal "$stderr" "whk-deliver: 3 attempts: 3 delivered, 0 failed; 0 skipped (delivered, taken by another deliverer, not due or endpoint disabled)"
	jq -r .webhook <<<"$output" | sort >got
	run jq -r .kind <<<"$output"
	assert_output $'first\nfirst\nfirst'
	tail -n 3 a.recs | jq -r .webhook | sort >want
	run diff got want
	assert_success
	run --separate-stderr whk-deliver --pending </dev/null
	assert_success
	assert_output ""
	run sql "SELECT e.name, w.state, w.attempts FROM webhooks w
	    JOIN endpoints e ON e.id = w.endpoint_id ORDER BY w.seq"
	assert_output $'a|delivered|1\na|delivered|1\na|delivered|1\na|delivered|1\nf|failed|1\nf|failed|1'
	assert_equal "$(received | wc -l)" 6
}

@test "--pending with records on a pipe or in a file: the records first (a due retry too), then every webhook never attempted" {
	receiver_start
	ep a /ok
	ep f /fail-first
	hooks f 1 >f.recs
	run whk-deliver <f.recs
	assert_failure 1
	hooks a 3 >a.recs
	later=$(($(date +%s) + 60))
	WHK_NOW=$later whk-retry >/dev/null
	WHK_NOW=$later run --separate-stderr eval 'cat f.recs | whk-deliver --pending'
	assert_success
	[ -z "$stderr" ]
	[ "${#lines[@]}" -eq 4 ]
	like "$(line_of f)" '{"webhook":"@MSG@","endpoint":"f","attempt":2,"kind":"retry","status":200,"ms":@N@,"outcome":"delivered","error":null}'
	run eval 'line_of a | jq -r "[.attempt, .kind, .outcome] | @tsv"'
	assert_output $'1\tfirst\tdelivered\n1\tfirst\tdelivered\n1\tfirst\tdelivered'
	# A file will do as well; /dev/null is not read (nothing left anyway).
	hooks a 1 >more.recs
	hooks f 1 >>more.recs
	run --separate-stderr whk-deliver --pending <more.recs
	assert_failure 1
	[ "${#lines[@]}" -eq 2 ]
	run --separate-stderr whk-deliver --pending </dev/null
	assert_success
	assert_output ""
	run sql "SELECT state, count(*) FROM webhooks GROUP BY 1 ORDER BY 1"
	assert_output $'delivered|5\nfailed|1'
}

@test "--endpoint NAME narrows stdin and --pending to that endpoint" {
	receiver_start
	ep a /ok
	ep b /ok
	{
		hooks a 3
		hooks b 3
	} >recs
	run --separate-stderr whk-deliver --endpoint b -v <recs
	assert_success
	[ "${#lines[@]}" -eq 3 ]
	run jq -r .endpoint <<<"$output"
	assert_output $'b\nb\nb'
	run sql "SELECT e.name, w.state, w.attempts FROM webhooks w
	    JOIN endpoints e ON e.id = w.endpoint_id ORDER BY w.seq"
	assert_output $'a|pending|0\na|pending|0\na|pending|0\nb|delivered|1\nb|delivered|1\nb|delivered|1'
	hooks b 2 >more
	run --separate-stderr whk-deliver --pending -e a </dev/null
	assert_success
	[ "${#lines[@]}" -eq 3 ]
	run jq -r .endpoint <<<"$output"
	assert_output $'a\na\na'
	run sql "SELECT count(*) FROM webhooks WHERE attempts = 0"
	assert_output 2
}

@test "--limit N makes at most N attempts, from stdin or --pending; the rest stay pending, unleased" {
	receiver_start
	ep a /ok
	hooks a 10 >recs
	run --separate-stderr whk-deliver --limit 3 <recs
	assert_success
	[ "${#lines[@]}" -eq 3 ]
	run --separate-stderr whk-deliver --pending -l 4 </dev/null
	assert_success
	[ "${#lines[@]}" -eq 4 ]
	run sql "SELECT state, attempts, lease_until IS NULL, count(*) FROM webhooks
	    GROUP BY 1, 2, 3 ORDER BY 1"
	assert_output $'delivered|1|1|7\npending|0|1|3'
	assert_equal "$(received | wc -l)" 7
	run --separate-stderr whk-deliver --pending --limit 100 </dev/null
	assert_success
	[ "${#lines[@]}" -eq 3 ]
}

@test "stdin: lines that are not JSON, lack \"webhook\" or name an unknown id are rejected by line number; the good ones are delivered; exit 1" {
	receiver_start
	ep a /ok
	hooks a 2 >recs
	{
		sed -n 1p recs
		echo 'not json'
		echo '{"x":1}'
		echo '{"webhook":"msg_00000000000000000000000000"}'
		echo
		echo '{"webhook":42}'
		echo '[1,2]'
		sed -n 2p recs | jq -c '{webhook, extra: {"ignored": true}}'
	} >input
	run --separate-stderr whk-deliver <input
	assert_failure 1
	[ "${#lines[@]}" -eq 2 ]
	jq -r .webhook <<<"$output" | sort >got
	jq -r .webhook recs | sort >want
	run diff got want
	assert_success
	assert_equal "$stderr" "whk-deliver: line 2: not JSON: invalid literal 'not'
whk-deliver: line 3: no \"webhook\" id in the record
whk-deliver: line 4: no webhook 'msg_00000000000000000000000000' in the store
whk-deliver: line 6: no \"webhook\" id in the record
whk-deliver: line 7: not a JSON object but array"
	assert_equal "$(received | wc -l)" 2
}

@test "stdin: an id with a NUL in it names no webhook, not the one before the NUL" {
	receiver_start
	ep a /ok
	hooks a 1 >recs
	id=$(jq -r .webhook recs)
	printf '{"webhook":"%s\\u0000x"}\n' "$id" >input
	run --separate-stderr whk-deliver <input
	assert_failure 1
	assert_output ""
	assert_equal "${stderr%%:*}" "whk-deliver"
	assert_regex "$stderr" "^whk-deliver: line 1: "
	assert_equal "$(received | wc -l)" 0
	run sql "SELECT attempts FROM webhooks"
	assert_output 0
}

# --- leases ----------------------------------------------------------------

@test "two deliverers fed the same records never send one webhook twice" {
	receiver_start
	ep a '/slow?ms=50' --concurrency 10
	hooks a 50 >recs
	whk-deliver <recs >out1 2>err1 3>&- &
	p1=$!
	whk-deliver <recs >out2 2>err2 3>&- &
	p2=$!
	s1=0 s2=0
	wait "$p1" || s1=$?
	wait "$p2" || s2=$?
	assert_equal "$s1/$s2" "0/0"
	assert_equal "$(cat err1 err2)" ""
	echo "split: $(wc -l <out1) + $(wc -l <out2)"
	run eval 'cat out1 out2 | jq -r .webhook | sort | uniq -d'
	assert_output ""
	assert_equal "$(cat out1 out2 | wc -l)" 50
	run eval 'received | jq -r .id | sort | uniq -d'
	assert_output ""
	assert_equal "$(received | wc -l)" 50
	run eval 'received | jq .concurrent | sort -u'
	assert_output 1
	run sql "SELECT n, outcome, count(*) FROM attempts GROUP BY 1, 2"
	assert_output "1|delivered|50"
	assert_equal "$(leased)" 0
}

@test "a webhook leased by another deliverer is skipped; once the lease ran out, an attempt of unknown outcome is recorded, then a new one" {
	receiver_start
	ep a /ok
	hooks a 2 >recs
	first=$(jq -r .webhook recs | head -n 1)
	until=$((($(date +%s) + 600) * 1000))
	sql "UPDATE webhooks SET lease_until = $until, lease_owner = 'elsewhere:1'
	    WHERE id = '$first'"
	run --separate-stderr whk-deliver -v <recs
	assert_success
	[ "${#lines[@]}" -eq 1 ]
	refute_output --partial "$first"
	assert_equal "$stderr" "whk-deliver: 1 attempts: 1 delivered, 0 failed; 1 skipped (delivered, taken by another deliverer, not due or endpoint disabled)"
	run --separate-stderr whk-deliver --pending </dev/null
	assert_success
	assert_output ""
	run sql "SELECT attempts, lease_until, lease_owner FROM webhooks WHERE id = '$first'"
	assert_output "0|$until|elsewhere:1"
	assert_equal "$(received | wc -l)" 1
	WHK_NOW=$((until / 1000 + 1)) run --separate-stderr whk-deliver <recs
	assert_failure 1
	[ "${#lines[@]}" -eq 2 ]
	like "${lines[0]}" "{\"webhook\":\"$first\",\"endpoint\":\"a\",\"attempt\":1,\"kind\":\"first\",\"status\":null,\"ms\":null,\"outcome\":\"failed\",\"error\":\"unknown outcome: the deliverer that claimed it stopped before recording the attempt (its lease ran out)\"}"
	like "${lines[1]}" "{\"webhook\":\"$first\",\"endpoint\":\"a\",\"attempt\":2,\"kind\":\"retry\",\"status\":200,\"ms\":@N@,\"outcome\":\"delivered\",\"error\":null}"
	run sql "SELECT a.n, a.kind, a.status, a.ms IS NULL, a.outcome, a.error FROM attempts a
	    JOIN webhooks w ON w.seq = a.webhook_seq WHERE w.id = '$first' ORDER BY a.n"
	assert_output "1|first||1|failed|unknown outcome: the deliverer that claimed it stopped before recording the attempt (its lease ran out)
2|retry|200|0|delivered|"
	run sql "SELECT state, attempts, lease_until IS NULL, lease_owner IS NULL FROM webhooks WHERE id = '$first'"
	assert_output "delivered|2|1|1"
}

@test "a late result never overwrites a webhook another deliverer took over: the attempt is recorded, the webhook left to it" {
	receiver_start
	ep s '/slow?ms=1500'
	hooks s 1 >recs
	id=$(jq -r .webhook recs)
	whk-deliver <recs >out 2>err 3>&- &
	pid=$!
	wait_sql "SELECT lease_owner IS NOT NULL FROM webhooks" 1
	# As when this deliverer's lease ran out and another claimed it.
	until=$(($(date +%s) * 1000 + 600000))
	sql "UPDATE webhooks SET lease_owner = 'elsewhere:1', lease_until = $until"
	status=0
	wait "$pid" || status=$?
	assert_equal "$status" 0
	assert_equal "$(cat err)" "whk-deliver: webhook $id: its lease ran out before the attempt was recorded, and another deliverer took it over; the attempt is recorded, the webhook's state left to it"
	like "$(cat out)" "{\"webhook\":\"$id\",\"endpoint\":\"s\",\"attempt\":1,\"kind\":\"first\",\"status\":200,\"ms\":@N@,\"outcome\":\"delivered\",\"error\":null}"
	run sql "SELECT n, status, outcome FROM attempts"
	assert_output "1|200|delivered"
	run sql "SELECT state, attempts, lease_owner, lease_until FROM webhooks"
	assert_output "pending|0|elsewhere:1|$until"
}

@test "a claim whose lease no longer outlives its endpoint's timeout is given back and claimed again, never sent on the short lease" {
	receiver_start
	ep s '/slow?ms=300' --timeout 1s --concurrency 1
	hooks s 30 >recs
	whk-deliver <recs >out 2>err 3>&- &
	pid=$!
	# Answers came in, so it holds claims in reserve, leased for 1 s each.
	wait_sql "SELECT count(*) > 1 FROM webhooks WHERE lease_owner IS NOT NULL" 1
	whk-endpoint set s --timeout 60s --url "$RECEIVER/never" >/dev/null
	for i in $(seq 200); do
		received | grep -q '"path":"/never"' && break
		sleep 0.05
	done
	received | jq -r 'select(.path == "/never") | "\(.id) \(.t * 1000 | floor)"' >never
	kill -9 "$pid"
	wait "$pid" || true
	[ -s never ]
	# Each request of the new settings holds a lease for its 60 s and
	# at least 15 s more, counted from when it reached the receiver.
	while read -r id t; do
		until=$(sql "SELECT lease_until FROM webhooks WHERE id = '$id'")
		[ "$until" -ge $((t + 75000)) ] ||
			fail "$id: sent at $t with a lease until $until"
	done <never
	# Nothing was sent twice, nor given back and lost.
	run eval 'received | jq -r .id | sort | uniq -d'
	assert_output ""
}

@test "claims waiting in reserve are claimed again, before they could run out, when their endpoint's timeout grows while its slot is busy" {
	receiver_start
	ep s '/slow?ms=6000' --timeout 7s --concurrency 1
	hooks s 8 >recs
	whk-deliver <recs >out 2>err 3>&- &
	pid=$!
	# One answered: one in flight now, and claims in reserve behind it,
	# leased for a 7 s timeout each.
	wait_sql "SELECT count(*) FROM attempts" 1
	wait_sql "SELECT count(*) > 2 FROM webhooks WHERE lease_owner IS NOT NULL" 1
	whk-endpoint set s --timeout 60s >/dev/null
	# Within two seconds (a reload, a look at the claims), while the slot
	# is still busy: every claim waiting has a lease for 60 s and 15 s
	# more; only the one in flight keeps its own.
	sleep 2.5
	now=$(($(date +%s) * 1000))
	run sql "SELECT count(*) - 1 = sum(lease_until >= $now + 75000)
	    FROM webhooks WHERE lease_owner IS NOT NULL"
	answered=$(received | wc -l)
	kill -9 "$pid"
	wait "$pid" || true
	assert_output 1
	assert_equal "$answered" 1
}

@test "kill -9 mid-flight: --pending sends what was never sent; what was in flight stays leased until the lease runs out, then --pending sends it again; nothing lost" {
	receiver_start
	ep k /never --timeout 5s --concurrency 3
	hooks k 8 >recs
	whk-deliver <recs >out1 2>err1 3>&- &
	pid=$!
	wait_received 3
	kill -9 "$pid"
	wait "$pid" || true
	assert_equal "$(cat out1)" ""
	assert_equal "$(leased)" 3
	received | jq -r .id | sort >inflight
	run sql "SELECT count(*) FROM attempts"
	assert_output 0
	# The receiver is fixed; the first-attempt lane sends the other five.
	whk-endpoint set k --url "$RECEIVER/ok" >/dev/null
	run --separate-stderr whk-deliver --pending </dev/null
	assert_success
	[ "${#lines[@]}" -eq 5 ]
	jq -r .webhook <<<"$output" | sort >sent
	run comm -12 sent inflight
	assert_output ""
	assert_equal "$(leased)" 3
	# Fed again, or --pending again, while the leases hold: nothing is sent.
	run --separate-stderr whk-deliver <recs
	assert_success
	assert_output ""
	run --separate-stderr whk-deliver --pending </dev/null
	assert_success
	assert_output ""
	# The leases ran out (timeout 5s + 30s): the reconciliation run alone
	# records each lost attempt and prints it, and sends the webhook again
	# at once.
	later=$(($(date +%s) + 60))
	WHK_NOW=$later run --separate-stderr whk-deliver --pending </dev/null
	assert_failure 1
	[ -z "$stderr" ]
	[ "${#lines[@]}" -eq 6 ]
	out=$output
	jq -r 'select(.attempt == 2) | .webhook' <<<"$out" | sort >again
	jq -r 'select(.attempt == 1) | .webhook' <<<"$out" | sort >lost
	run diff again inflight
	assert_success
	run diff lost inflight
	assert_success
	for id in $(cat inflight); do
		run eval 'jq -c --arg id "$id" "select(.webhook == \$id)" <<<"$out"'
		like "${lines[0]}" "{\"webhook\":\"$id\",\"endpoint\":\"k\",\"attempt\":1,\"kind\":\"first\",\"status\":null,\"ms\":null,\"outcome\":\"failed\",\"error\":\"unknown outcome: the deliverer that claimed it stopped before recording the attempt (its lease ran out)\"}"
		like "${lines[1]}" "{\"webhook\":\"$id\",\"endpoint\":\"k\",\"attempt\":2,\"kind\":\"retry\",\"status\":200,\"ms\":@N@,\"outcome\":\"delivered\",\"error\":null}"
	done
	run sql "SELECT n, outcome, status IS NULL,
	    coalesce(error, '') LIKE 'unknown outcome%', count(*)
	    FROM attempts GROUP BY 1, 2, 3, 4 ORDER BY 1, 2"
	assert_output $'1|delivered|0|0|5\n1|failed|1|1|3\n2|delivered|0|0|3'
	# Nothing lost: every webhook delivered exactly once to /ok.
	run sql "SELECT state, count(*) FROM webhooks GROUP BY 1"
	assert_output "delivered|8"
	assert_equal "$(leased)" 0
	run eval 'received | jq -r "select(.path == \"/ok\") | .id" | sort | uniq -d'
	assert_output ""
	assert_equal "$(received | jq -r 'select(.path == "/ok") | .id' | wc -l)" 8
}

@test "an endpoint disabled during a run is noticed: its waiting webhooks are dropped from the run, unclaimed" {
	receiver_start
	ep s '/slow?ms=500' --concurrency 1
	hooks s 20 >recs
	whk-deliver <recs >out 2>err 3>&- &
	pid=$!
	wait_sql "SELECT count(*) > 0 FROM attempts" 1
	whk-endpoint disable s --reason "maintenance" >/dev/null
	status=0
	wait "$pid" || status=$?
	assert_equal "$status" 0
	assert_equal "$(cat err)" ""
	n=$(wc -l <out)
	echo "$n attempts before it was noticed"
	[ "$n" -ge 1 ]
	[ "$n" -lt 20 ]
	run sql "SELECT count(*) FROM attempts; SELECT count(*) FROM webhooks
	    WHERE attempts = 0 AND state = 'pending' AND lease_until IS NULL"
	assert_output "$n
$((20 - n))"
	assert_equal "$(received | wc -l)" "$n"
}

# --- signals and the store -------------------------------------------------

@test "SIGTERM with requests in flight and stdin still open: no new work, the flights recorded, exit 0, nothing leased" {
	receiver_start
	ep s '/slow?ms=1500' --concurrency 4
	hooks s 10 >recs
	mkfifo input
	exec 5<>input
	cat recs >&5
	whk-deliver <input >out 2>err 3>&- 5>&- &
	pid=$!
	wait_sql "SELECT count(*) FROM webhooks WHERE lease_owner IS NOT NULL" 4
	kill -TERM "$pid"
	status=0
	wait "$pid" || status=$?
	exec 5>&-
	assert_equal "$status" 0
	assert_equal "$(cat err)" ""
	run cat out
	[ "${#lines[@]}" -eq 4 ]
	run jq -r '[.attempt, .status, .outcome] | @tsv' out
	assert_output $'1\t200\tdelivered\n1\t200\tdelivered\n1\t200\tdelivered\n1\t200\tdelivered'
	assert_equal "$(leased)" 0
	run sql "SELECT state, attempts, count(*) FROM webhooks GROUP BY 1, 2 ORDER BY 1"
	assert_output $'delivered|1|4\npending|0|6'
	assert_equal "$(received | wc -l)" 4
}

@test "claims in reserve: a fast endpoint holds more claims than slots; SIGTERM gives them back, unsent, and nothing stays leased" {
	receiver_start
	ep r '/slow?ms=300' --concurrency 4
	hooks r 40 >recs
	# --foreground: timeout passes the TERM on once, not to the group too.
	timeout --foreground -s KILL 20 whk-deliver <recs >out 2>err 3>&- &
	pid=$!
	# Four in flight, and once four answered, some held in reserve.
	wait_sql "SELECT count(*) > 4 FROM webhooks WHERE lease_owner IS NOT NULL" 1
	# At most its 4 slots and three times 4 in reserve.
	run sql "SELECT count(*) <= 16 FROM webhooks WHERE lease_owner IS NOT NULL"
	assert_output 1
	t=$(date +%s%3N)
	kill -TERM "$pid"
	status=0
	wait "$pid" || status=$?
	assert_equal "$status: $(cat err)$(grep -v '"delivered"' out)" "0: "
	# Nothing started after the signal.
	run sql "SELECT count(*) FROM attempts WHERE started_at > $t"
	assert_output 0
	sent=$(wc -l <out)
	[ "$sent" -ge 4 ] && [ "$sent" -lt 40 ]
	assert_equal "$(received | wc -l)" "$sent"
	run jq -r .outcome out
	assert_output "$(yes delivered | head -n "$sent")"
	assert_equal "$(leased)" 0
	run sql "SELECT state, attempts, count(*) FROM webhooks GROUP BY 1, 2 ORDER BY 1"
	assert_output "delivered|1|$sent
pending|0|$((40 - sent))"
	# What was given back goes in the first-attempt lane, as if never claimed.
	run --separate-stderr whk-deliver --pending </dev/null
	assert_success
	[ "${#lines[@]}" -eq $((40 - sent)) ]
	assert_equal "$(received | jq -r .id | sort -u | wc -l)" 40
}

@test "a second signal gives up on the flights: recorded as interrupted, exit 1, nothing leased" {
	receiver_start
	ep n /never --timeout 10s --concurrency 2
	hooks n 3 >recs
	whk-deliver --pending </dev/null >out 2>err 3>&- &
	pid=$!
	wait_received 2
	kill -TERM "$pid"
	kill -INT "$pid"
	status=0
	wait "$pid" || status=$?
	assert_equal "$status" 1
	assert_equal "$(cat err)" ""
	run jq -c '[.attempt, .status, .outcome, .error]' out
	assert_output $'[1,null,"failed","interrupted"]\n[1,null,"failed","interrupted"]'
	assert_equal "$(leased)" 0
	run sql "SELECT state, attempts, count(*) FROM webhooks GROUP BY 1, 2 ORDER BY 1"
	assert_output $'failed|1|2\npending|0|1'
}

@test "a store locked past the busy timeout: exit 3, nothing sent, nothing claimed" {
	receiver_start
	ep a /ok
	hooks a 3 >recs
	sqlite3 "$WHK_STORE" "BEGIN IMMEDIATE" ".system touch locked" ".system sleep 2" 3>&- &
	locker=$!
	for i in $(seq 100); do [ -e locked ] && break; sleep 0.05; done
	WHK_BUSY_TIMEOUT=200ms run --separate-stderr whk-deliver --pending </dev/null
	assert_failure 3
	assert_output ""
	assert_equal "$stderr" "whk-deliver: store '$WHK_STORE' is locked by another process (waited 200ms)"
	WHK_BUSY_TIMEOUT=200ms run --separate-stderr whk-deliver <recs
	assert_failure 3
	assert_output ""
	assert_equal "$stderr" "whk-deliver: store '$WHK_STORE' is locked by another process (waited 200ms)"
	wait "$locker"
	assert_equal "$(received | wc -l)" 0
	run sql "SELECT count(*) FROM attempts; SELECT count(*) FROM webhooks WHERE attempts = 0 AND lease_until IS NULL"
	assert_output $'0\n3'
	run --separate-stderr whk-deliver --pending </dev/null
	assert_success
	[ "${#lines[@]}" -eq 3 ]
}
