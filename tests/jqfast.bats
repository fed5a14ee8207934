#!/usr/bin/env bats
# whk-batch's --filter and --group-by against the jq program: every
# decision and every key the same, on events of every shape.

load helpers

CASES="$BATS_TEST_DIRNAME/fixtures/jq-fast-cases.py"

bats_require_minimum_version 1.5.0

# differential SEED N SET: N events from SEED and the expressions of SET,
# each as endpoint f<j> (--filter), g<j> (--group-by) or both; what
# whk-batch linked, the keys it gave and the warnings it printed, against
# what jq says of each expression on each event.
differential() {
	local j=0 line kinds e

	python3 "$CASES" events "$1" "$2" >events
	python3 "$CASES" exprs "$3" >exprs
	python3 "$CASES" expect events exprs | LC_ALL=C sort >expected
	while IFS= read -r line; do
		kinds=${line%% *}
		e=${line#* }
		if [ "${kinds#*f}" != "$kinds" ]; then
			whk-endpoint add "f$j" https://example.com/f \
			    --filter "$e" --batch 10000 >/dev/null
		fi
		if [ "${kinds#*g}" != "$kinds" ]; then
			whk-endpoint add "g$j" https://example.com/g \
			    --group-by "$e" --batch 10000 >/dev/null
		fi
		j=$((j + 1))
	done <exprs
	# Only the expressions look at the events: any shape is stored.
	whk-ingest --type-from empty --tenant-from empty <events >recs
	[ "$(wc -l <recs)" -eq "$2" ]
	run --separate-stderr whk-batch <recs
	assert_success
	echo "$stderr" | grep -v '^$' >err || true
	sqlite3 -batch -separator ' ' "$WHK_STORE" \
	    "SELECT id, key FROM events" >ids
	{
		sql "SELECT CASE WHEN p.name LIKE 'f%'
		    THEN 'take ' || p.name || ' ' || e.key
		    ELSE 'group ' || p.name || ' ' || e.key || ' ' ||
		    h.group_key END
		    FROM webhook_events w JOIN events e ON e.seq = w.event_seq
		    JOIN endpoints p ON p.id = w.endpoint_id
		    JOIN webhooks h ON h.seq = w.webhook_seq"
		# Warnings name events by id; jq's answers by their "id".
		awk 'NR == FNR { key[$1] = $2; next }
		    (i = index($0, " on event ")) > 0 {
			rest = substr($0, i + 10)
			c = index(rest, ":")
			$0 = substr($0, 1, i + 9) key[substr(rest, 1, c - 1)] \
			    substr(rest, c)
		    }
		    { print }' ids err
	} | LC_ALL=C sort >actual
	run diff -u expected actual
	assert_success
}

# count PATTERN: lines of the expected answers matching PATTERN.
count() {
	grep -c -- "$1" expected || true
}

@test "simple paths and comparisons: what jq takes, keys and errors, on 400 varied events" {
	differential 1 400 simple
	# Not equal by accident: the answers are many and of every kind.
	[ "$(count '^take ')" -gt 5000 ]
	[ "$(count '^group ')" -eq $((400 * $(grep -c '^fg ' exprs))) ]
	[ "$(count '^whk-batch: ')" -gt 100 ]
	[ "$(count 'Cannot index number with string "x"$')" -gt 0 ]
	[ "$(count 'Cannot index array with string "x"$')" -gt 0 ]
	[ "$(count '^group .* "tenant-[0-4]"$')" -gt 100 ]
	[ "$(count '^group .* null$')" -gt 1000 ]
	[ "$(count '^group .* false$')" -gt 100 ]
	[ "$(count '^group .* true$')" -gt 100 ]
	# Among them, values jq prints otherwise than the events spell them.
	[ "$(count '^group .* 100$')" -gt 0 ]
	[ "$(count '^group .* 1.7976931348623157e+308$')" -gt 0 ]
	[ "$(count '^group .* "x\\"y"$')" -gt 0 ]
	[ "$(count '^group .* "del\\u007f"$')" -gt 0 ]
	[ "$(count '^group .* "Abc"$')" -gt 0 ]
	[ "$(count '^group .* \[1,2\]$')" -gt 0 ]
}

@test "other expressions among simple ones, in more than one jq part: what jq takes, keys and errors" {
	differential 2 150 mixed
	[ "$(count '^take ')" -gt 1000 ]
	[ "$(count '^whk-batch: ')" -gt 50 ]
	[ "$(count 'cannot be negated$')" -gt 0 ]
	[ "$(count '^group .* \["tenant-[0-4]",')" -gt 0 ]
}
