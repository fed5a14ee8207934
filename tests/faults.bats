#!/usr/bin/env bats
# Receiver faults: whk-deliver against receivers that refuse, reset, hang
# up without a word, trickle, never answer, answer garbage, answer too much, redirect for
# ever, show a certificate nobody signed, or have no name.  Each is a
# failed attempt with its own reason, the rest of the run goes on, and the
# slow lane delivers once the receiver is fixed.

load helpers

bats_require_minimum_version 1.5.0

# --- helpers of this suite -------------------------------------------------

teardown() {
	tls_stop
	receivers_stop
}

# at NAME URL [OPTIONS...]: an endpoint at URL, whatever its host, that
# gets the events of tenant NAME.
at() {
	local name=$1 url=$2
	shift 2
	whk-endpoint add "$name" "$url" --allow-private --tenant "$name" \
	    "$@" >/dev/null
}

# tls_start: a TLS server (openssl s_server) on a free loopback port, with
# a self-signed certificate for 127.0.0.1 made here; wait until a client
# that trusts the certificate gets an answer from it (so the only fault
# left is the trust), then export TLS_URL (https://127.0.0.1:PORT).
tls_start() {
	local dir=$BATS_TEST_TMPDIR/tls i port=
	mkdir -p "$dir" && selfsigned "$dir" || return 1
	# fd 3 closed: bats waits for whoever holds it open.
	openssl s_server -accept 127.0.0.1:0 -cert "$dir/cert.pem" \
	    -key "$dir/key.pem" -www </dev/null >"$dir/out" 2>&1 3>&- &
	echo $! >"$dir/pid"
	for i in $(seq 200); do
		port=$(sed -n 's/^ACCEPT 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$dir/out")
		[ -n "$port" ] && break
		sleep 0.025
	done
	if [ -z "$port" ]; then
		echo "openssl s_server did not start: $(cat "$dir/out")" >&2
		return 1
	fi
	export TLS_URL="https://127.0.0.1:$port"
	curl -sS -o /dev/null --max-time 5 --cacert "$dir/cert.pem" "$TLS_URL/"
}

# tls_stop: stop the server tls_start started, if any.
tls_stop() {
	local f=$BATS_TEST_TMPDIR/tls/pid
	[ -f "$f" ] || return 0
	kill -TERM "$(cat "$f")" 2>/dev/null || true
	wait "$(cat "$f")" 2>/dev/null || true
	rm -f "$f"
	return 0
}

# feed TENANT...: one new event of each TENANT, in that order, ingested and
# batched in one go; prints whk-batch's records (whk-deliver's input).
feed() {
	local t n=0
	for t in "$@"; do
		n=$((n + 1))
		printf '{"id":"%s-%d","tenant":"%s","n":%d}\n' "$t" "$n" "$t" "$n"
	done | whk-ingest | whk-batch
}

# The faulty endpoints, one webhook each, in the order they are fed.
FAULTS=(refused reset empty trickle silent garbage huge loop tls dns)

# faults: the test receiver, the TLS server, an endpoint for each fault
# and a healthy one, "fine"; writes recs, one webhook of each fault with
# one of fine's after each.  Sets PORT, the port nobody listens on.
faults() {
	receiver_start || return 1
	tls_start || return 1
	PORT=$(free_port)
	at refused "http://127.0.0.1:$PORT/ok"
	ep reset /reset
	ep empty /close
	ep trickle '/slow-body?status=500' --timeout 1s
	ep silent /never --timeout 1s
	ep garbage /garbage
	ep huge '/huge?status=500'
	ep loop /redirect-loop
	at tls "$TLS_URL/ok" --timeout 5s
	# RFC 6761: no name under .invalid resolves.
	at dns http://hooks.example.invalid/ok --timeout 5s
	ep fine /ok
	feed $(printf '%s fine ' "${FAULTS[@]}") >recs
}

# --- the faults ------------------------------------------------------------

@test "every fault at once beside a healthy endpoint: each a failed attempt with its own reason and status, printed and stored alike; every healthy webhook delivered; the run ends within the timeouts, exit 1, nothing leased" {
	faults
	# (No request may take over 15 s, the default timeout, and they run
	# at once: a run still going after 30 s hung.)
	run --separate-stderr timeout 30 whk-deliver <recs
	assert_failure 1
	[ -z "$stderr" ]
	[ "${#lines[@]}" -eq 20 ]
	printf '%s\n' "$output" >out
	like "$(line_of refused)" "{\"webhook\":\"@MSG@\",\"endpoint\":\"refused\",\"attempt\":1,\"kind\":\"first\",\"status\":null,\"ms\":@N@,\"outcome\":\"failed\",\"error\":\"Failed to connect to 127.0.0.1 port $PORT after @N@ ms: Connection refused\"}"
	like "$(line_of reset)" '{"webhook":"@MSG@","endpoint":"reset","attempt":1,"kind":"first","status":null,"ms":@N@,"outcome":"failed","error":"Recv failure: Connection reset by peer"}'
	like "$(line_of empty)" '{"webhook":"@MSG@","endpoint":"empty","attempt":1,"kind":"first","status":null,"ms":@N@,"outcome":"failed","error":"Empty reply from server"}'
	like "$(line_of trickle)" '{"webhook":"@MSG@","endpoint":"trickle","attempt":1,"kind":"first","status":500,"ms":@N@,"outcome":"failed","error":"timed out after @N@ ms reading the response"}'
	like "$(line_of silent)" '{"webhook":"@MSG@","endpoint":"silent","attempt":1,"kind":"first","status":null,"ms":@N@,"outcome":"failed","error":"timed out after @N@ ms waiting for the response"}'
	like "$(line_of garbage)" '{"webhook":"@MSG@","endpoint":"garbage","attempt":1,"kind":"first","status":null,"ms":@N@,"outcome":"failed","error":"invalid HTTP response: Received HTTP/0.9 when not allowed"}'
	like "$(line_of huge)" '{"webhook":"@MSG@","endpoint":"huge","attempt":1,"kind":"first","status":500,"ms":@N@,"outcome":"failed","error":"response over 1048576 bytes: connection dropped"}'
	like "$(line_of loop)" '{"webhook":"@MSG@","endpoint":"loop","attempt":1,"kind":"first","status":302,"ms":@N@,"outcome":"failed","error":"HTTP 302"}'
	like "$(line_of tls)" '{"webhook":"@MSG@","endpoint":"tls","attempt":1,"kind":"first","status":null,"ms":@N@,"outcome":"failed","error":"SSL certificate problem: self-signed certificate"}'
	like "$(line_of dns)" '{"webhook":"@MSG@","endpoint":"dns","attempt":1,"kind":"first","status":null,"ms":@N@,"outcome":"failed","error":"Could not resolve host: hooks.example.invalid"}'
	# The two timeouts each ran their whole second (the time libcurl
	# reports can fall short of it by a hair).
	[ "$(line_of trickle | jq .ms)" -ge 990 ]
	[ "$(line_of silent | jq .ms)" -ge 990 ]
	# The healthy webhooks, fed between the faults: all delivered.
	run eval 'line_of fine | jq -r "[.attempt, .status, .outcome, .error] | @tsv"'
	assert_output "$(yes $'1\t200\tdelivered\t' | head -n 10)"
	# What was printed is what the store holds, attempt by attempt.
	jq -r '[.webhook, .attempt, .status, .ms, .outcome, .error] |
	    join("|")' out | sort >printed
	sql "SELECT w.id, a.n, a.status, a.ms, a.outcome, a.error
	    FROM attempts a JOIN webhooks w ON w.seq = a.webhook_seq" |
	    sort >stored
	run diff printed stored
	assert_success
	run sql "SELECT count(*) FROM attempts"
	assert_output 20
	# Each failed webhook waits for whk-retry, unscheduled, unleased.
	run sql "SELECT e.name, w.state, w.attempts, w.last_status IS a.status,
	    w.last_error IS a.error, w.delivered_at IS NULL, w.next_at IS NULL,
	    count(*) FROM webhooks w JOIN endpoints e ON e.id = w.endpoint_id
	    JOIN attempts a ON a.webhook_seq = w.seq
	    GROUP BY 1, 2, 3, 4, 5, 6, 7 ORDER BY 1"
	assert_output "dns|failed|1|1|1|1|1|1
empty|failed|1|1|1|1|1|1
fine|delivered|1|1|1|0|1|10
garbage|failed|1|1|1|1|1|1
huge|failed|1|1|1|1|1|1
loop|failed|1|1|1|1|1|1
refused|failed|1|1|1|1|1|1
reset|failed|1|1|1|1|1|1
silent|failed|1|1|1|1|1|1
tls|failed|1|1|1|1|1|1
trickle|failed|1|1|1|1|1|1"
	assert_equal "$(leased)" 0
	# The receiver saw each of its faults once (a reset or a hang-up on a
	# reused connection may be sent once more by libcurl, on a fresh
	# one), the redirect was not followed, and /ok got fine's webhooks,
	# no others.
	run eval 'received | jq -r "select(.path != \"/reset\" and .path != \"/close\") | .path" |
	    sort | uniq -c | tr -s " "'
	assert_output " 1 /garbage
 1 /huge?status=500
 1 /never
 10 /ok
 1 /redirect-loop
 1 /slow-body?status=500"
	run eval 'received | jq -r "select(.path == \"/reset\") | .id" | sort -u'
	assert_output "$(sql "SELECT w.id FROM webhooks w JOIN endpoints e
	    ON e.id = w.endpoint_id WHERE e.name = 'reset'")"
	run eval 'received | jq -r "select(.path == \"/close\") | .id" | sort -u'
	assert_output "$(sql "SELECT w.id FROM webhooks w JOIN endpoints e
	    ON e.id = w.endpoint_id WHERE e.name = 'empty'")"
	received | jq -r 'select(.path == "/ok") | .id' | sort >got
	sql "SELECT w.id FROM webhooks w JOIN endpoints e ON e.id = w.endpoint_id
	    WHERE e.name = 'fine'" | sort >want
	run diff got want
	assert_success
}

@test "whk-retry schedules each failure; once the receivers are fixed, the next run delivers every one as its second attempt" {
	faults
	now=$(date +%s)
	WHK_NOW=$now run --separate-stderr timeout 30 whk-deliver <recs
	assert_failure 1
	[ "${#lines[@]}" -eq 20 ]
	printf '%s\n' "$output" >out
	# The failures, handed over: each scheduled, none due yet.
	WHK_NOW=$now run --separate-stderr whk-retry -v <out
	assert_success
	assert_output ""
	assert_equal "$stderr" "whk-retry: scheduled 10 (0 dead), emitted 0 (0 probes), held 0 (breaker), rejected 0"
	run sql "SELECT e.name, w.state, w.next_at - w.last_attempt_at
	    BETWEEN 4000 AND 6000 FROM webhooks w
	    JOIN endpoints e ON e.id = w.endpoint_id
	    WHERE w.state != 'delivered' ORDER BY e.name"
	assert_output "dns|failed|1
empty|failed|1
garbage|failed|1
huge|failed|1
loop|failed|1
refused|failed|1
reset|failed|1
silent|failed|1
tls|failed|1
trickle|failed|1"
	# Fixed: a receiver now listens on the port that refused, and the
	# others point at a receiver that answers.
	OK=$RECEIVER/ok OKLOG=$RECEIVER_LOG
	receiver_start --port "$PORT"
	for f in "${FAULTS[@]}"; do
		[ "$f" = refused ] ||
		    whk-endpoint set "$f" --url "$OK" >/dev/null
	done
	later=$((now + 60))
	WHK_NOW=$later run --separate-stderr eval \
	    'whk-retry | timeout 30 whk-deliver'
	assert_success
	[ -z "$stderr" ]
	[ "${#lines[@]}" -eq 10 ]
	for f in "${FAULTS[@]}"; do
		id=$(jq -r --arg e "$f" 'select(.endpoint == $e) | .webhook' out)
		like "$(line_of "$f")" "{\"webhook\":\"$id\",\"endpoint\":\"$f\",\"attempt\":2,\"kind\":\"retry\",\"status\":200,\"ms\":@N@,\"outcome\":\"delivered\",\"error\":null}"
	done
	run sql "SELECT state, attempts, count(*) FROM webhooks GROUP BY 1, 2"
	assert_output "delivered|1|10
delivered|2|10"
	assert_equal "$(leased)" 0
	# The receiver on the refused port got the refused endpoint's webhook;
	# the other's /ok, fine's and the other faults' webhooks, once each.
	run eval 'received | jq -r "[.path, .id] | @tsv"'
	assert_output "/ok	$(jq -r 'select(.endpoint == "refused") | .webhook' out)"
	received "$OKLOG" | jq -r 'select(.path == "/ok") | .id' | sort >got
	jq -r 'select(.endpoint != "refused") | .webhook' out | sort >want
	run diff got want
	assert_success
}

# --- what a fault does not change ------------------------------------------

@test "a 2xx whose body then trickles past the timeout is delivered (the status decides), its error saying so; a body that trickles within it is delivered, whole" {
	receiver_start
	ep stalled /slow-body --timeout 1s
	ep slowly '/slow-body?bytes=3&every=100' --timeout 10s
	{
		hooks stalled 1
		hooks slowly 1
	} >recs
	run --separate-stderr timeout 30 whk-deliver <recs
	assert_success
	[ -z "$stderr" ]
	like "$(line_of stalled)" '{"webhook":"@MSG@","endpoint":"stalled","attempt":1,"kind":"first","status":200,"ms":@N@,"outcome":"delivered","error":"timed out after @N@ ms reading the response"}'
	like "$(line_of slowly)" '{"webhook":"@MSG@","endpoint":"slowly","attempt":1,"kind":"first","status":200,"ms":@N@,"outcome":"delivered","error":null}'
	run sql "SELECT e.name, a.status, a.outcome, a.error, a.response, w.state
	    FROM attempts a JOIN webhooks w ON w.seq = a.webhook_seq
	    JOIN endpoints e ON e.id = a.endpoint_id WHERE e.name = 'slowly'"
	assert_output "slowly|200|delivered||xxx|delivered"
	assert_equal "$(leased)" 0
}
