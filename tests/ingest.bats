#!/usr/bin/env bats
# whk-ingest: durable intake of NDJSON events.

load helpers

ID='evt_[0-9A-HJKMNP-TV-Z]{26}'

@test "stores an event byte for byte and prints its record after commit" {
	line='{"id":"a1","type":"order.created","tenant":"acme","n":12345678901234567890,"f":1.000000000000000000001}'
	run whk-ingest <<<"$line"
	assert_success
	assert_output --regexp "^\{\"event\":\"$ID\",\"key\":\"a1\",\"type\":\"order.created\",\"tenant\":\"acme\",\"duplicate\":false\}$"
	id=$(jq -r .event <<<"$output")
	run sql "select body from events where id = '$id'"
	assert_output "$line"
	run sql "select key, type, tenant from events"
	assert_output "a1|order.created|acme"
}

@test "type, tenant and key are optional; numeric keys and tenants are kept as JSON has them" {
	printf '%s\n' '{"x":1}' '{"id":42,"tenant":7}' '{"id":-1.5}' '{"id":"","type":"t"}' | whk-ingest >out
	run jq -c '[.key,.type,.tenant,.duplicate]' out
	assert_output $'[null,null,null,false]\n["42",null,"7",false]\n["-1.5",null,null,false]\n[null,"t",null,false]'
	run sql "select count(*) from events"
	assert_output 4
}

@test "--type-from, --tenant-from and --key-from choose the fields" {
	run whk-ingest --type-from '.kind' --tenant-from '.org.id' --key-from '.org.id + ":" + .ref' \
	    <<<'{"kind":"user.signup","org":{"id":"o9"},"ref":"r1","type":"ignored"}'
	assert_success
	run jq -c '[.key,.type,.tenant]' <<<"$output"
	assert_output '["o9:r1","user.signup","o9"]'
}

@test "--map rewrites the stored event; --require rejects events" {
	printf '%s\n' '{"id":"a","v":1}' '{"id":"b","v":2}' >in
	run whk-ingest --map '{id, type: "mapped", double: (.v * 2)}' --require '.double > 2' in
	assert_failure 1
	assert_output --partial '"key":"b","type":"mapped"'
	run sql "select body from events"
	assert_output '{"id":"b","type":"mapped","double":4}'
	run whk-ingest --require '.v > 2' in 2>&1
	assert_failure 1
	assert_line "whk-ingest: in: line 1: --require is not true"
	assert_line "whk-ingest: in: line 2: --require is not true"
}

@test "--map that fails, produces nothing or a non-object rejects the line" {
	run whk-ingest --map 'empty' <<<'{"a":1}'
	assert_failure 1
	assert_output "whk-ingest: line 1: --map produced nothing"
	run whk-ingest --map '.a' <<<'{"a":1}'
	assert_failure 1
	assert_output "whk-ingest: line 1: --map produced number, not an object"
	run whk-ingest --map '.a.b' <<<'{"a":1}'
	assert_failure 1
	assert_output --partial "whk-ingest: line 1: --map: Cannot index number"
	run sql "select count(*) from events"
	assert_output 0
}

@test "the same key twice stores one event and reports the first id, in one run and across runs" {
	printf '%s\n' '{"id":"k","v":1}' '{"id":"k","v":2}' | whk-ingest >out1
	run jq -c .duplicate out1
	assert_output $'false\ntrue'
	[ "$(jq -r .event out1 | sort -u | wc -l)" -eq 1 ]
	run whk-ingest <<<'{"id":"k","v":3}'
	assert_success
	[ "$(jq -r .event <<<"$output")" = "$(head -1 out1 | jq -r .event)" ]
	assert_output --partial '"duplicate":true'
	run sql "select body from events"
	assert_output '{"id":"k","v":1}'
}

@test "bad lines are reported with their number and reason; every good line is stored" {
	{
		echo '{"id":1}'
		echo 'not json'
		echo '[1,2]'
		echo '"str"'
		printf '{"a":"\xff"}\n'
		printf '{"a":"x\0y"}\n'
		echo '{"a":nan}'
		echo '{"a":01}'
		echo '{"a":.5}'
		echo '{"a":+1}'
		echo '{"a":1}{"b":2}'
		echo '{"a":'
		echo '{"id":12345678901234567890}'
		echo '{"type":5}'
		echo '{"tenant":[1]}'
		printf '{"a":"tab\there"}\n'
		awk 'BEGIN { for (i = 0; i < 300; i++) printf "["; for (i = 0; i < 300; i++) printf "]"; print "" }'
		echo '{"id":2}'
	} >in
	run whk-ingest in
	assert_failure 1
	assert_equal "$(grep -c '"event"' <<<"$output")" 2
	run sh -c 'whk-ingest in 2>&1 >/dev/null'
	assert_output "whk-ingest: in: line 2: not JSON: invalid literal 'not'
whk-ingest: in: line 3: not a JSON object but array
whk-ingest: in: line 4: not a JSON object but string
whk-ingest: in: line 5: invalid UTF-8 at byte 7
whk-ingest: in: line 6: NUL byte at byte 8
whk-ingest: in: line 7: not JSON: invalid literal 'nan'
whk-ingest: in: line 8: not JSON: invalid literal '01'
whk-ingest: in: line 9: not JSON: invalid literal '.5'
whk-ingest: in: line 10: not JSON: invalid literal '+1'
whk-ingest: in: line 11: not JSON: more after the object at byte 8
whk-ingest: in: line 12: not JSON: unexpected end of line
whk-ingest: in: line 13: id is a number too large to keep exactly; send it as a string
whk-ingest: in: line 14: type must be a string
whk-ingest: in: line 15: tenant must be a string or a number
whk-ingest: in: line 16: control character in a string at byte 10
whk-ingest: in: line 17: nested deeper than 256 levels"
	run sql "select key from events order by seq"
	assert_output $'1\n2'
}

@test "blank lines are skipped, CRLF is accepted and a leading BOM ignored" {
	printf '\xef\xbb\xbf{"id":"a"}\r\n\r\n   \n\n{"id":"b"}\r\n{"id":"c"}' | whk-ingest >out
	run jq -r .key out
	assert_output $'a\nb\nc'
	run sql "select body from events order by seq"
	assert_output $'{"id":"a"}\n{"id":"b"}\n{"id":"c"}'
}

@test "--max-bytes rejects longer lines without keeping them and goes on" {
	{
		echo '{"id":"small"}'
		printf '{"id":"big","pad":"%s"}\n' "$(head -c 3000000 /dev/zero | tr '\0' x)"
		echo '{"id":"after"}'
	} >in
	run whk-ingest --max-bytes 1K in
	assert_failure 1
	assert_line "whk-ingest: in: line 2: longer than --max-bytes (1024 bytes)"
	run sql "select key from events order by seq"
	assert_output $'small\nafter'
	run whk-ingest --max-bytes 4M <<<"$(sed -n 2p in)"
	assert_success
}

@test "reads files in order, '-' for stdin; an unreadable file is reported, exit 4, the others kept" {
	echo '{"id":"f1"}' >one
	echo '{"id":"f2"}' >two
	run whk-ingest one - nosuch two <<<'{"id":"stdin"}'
	assert_failure 4
	assert_line "whk-ingest: cannot open 'nosuch': No such file or directory"
	run sql "select key from events order by seq"
	assert_output $'f1\nstdin\nf2'
}

@test "a line that arrives alone is committed and printed before input ends" {
	mkfifo in
	whk-ingest <in >out 2>err &
	pid=$!
	exec 5>in
	echo '{"id":"lonely"}' >&5
	for i in $(seq 100); do
		[ -s out ] && break
		sleep 0.1
	done
	run cat out
	assert_output --partial '"key":"lonely"'
	run sql "select key from events"
	assert_output lonely
	exec 5>&-
	wait "$pid"
}

@test "kill -9 in the middle of a large ingest: every printed id is stored, the store is intact" {
	events 200000 >in
	whk-ingest in >out &
	pid=$!
	for i in $(seq 200); do
		[ "$(wc -l <out)" -gt 1000 ] && break
		sleep 0.02
	done
	kill -9 "$pid"
	wait "$pid" || true
	printed=$(wc -l <out)
	[ "$printed" -gt 0 ]
	run sql "PRAGMA integrity_check"
	assert_output ok
	printed_are_stored out
	# The rest comes in on a rerun, once.
	run whk-ingest in
	assert_success
	[ "$(sql 'select count(*) from events')" -eq 200000 ]
}

@test "4 concurrent ingests into one store lose nothing" {
	for i in 0 1 2 3; do
		events 5000 $((i * 5000)) | whk-ingest >out$i 2>err$i &
	done
	wait
	for i in 0 1 2 3; do
		run cat err$i
		assert_output ""
		[ "$(wc -l <out$i)" -eq 5000 ]
	done
	run sql "select count(*), count(distinct key) from events"
	assert_output "20000|20000"
}

@test "concurrent ingests of the same keys store each key once" {
	events 2000 >in
	for i in 0 1 2 3; do whk-ingest in >out$i & done
	wait
	run sql "select count(*) from events"
	assert_output 2000
	[ "$(cat out0 out1 out2 out3 | grep -c '"duplicate":false')" -eq 2000 ]
	[ "$(cat out0 out1 out2 out3 | jq -r .event | sort -u | wc -l)" -eq 2000 ]
}

@test "WHK_NOW sets the time of reception and the time in the id" {
	WHK_NOW=2026-03-01T12:00:00Z whk-ingest <<<'{"id":"a"}' >out
	run sql "select received_at from events"
	assert_output 1772366400000
	WHK_NOW=1772366400 whk-ingest <<<'{"id":"b"}' >>out
	run sql "select count(distinct substr(id, 1, 14)) from events"
	assert_output 1
	run whk-ingest <<<'{"id":"c"}'
	assert_success
	WHK_NOW=yesterday run whk-ingest <<<'{"id":"d"}'
	assert_failure 2
	assert_output "whk-ingest: invalid WHK_NOW 'yesterday' (use Unix seconds or RFC 3339)"
}

@test "ids are unique and sort in the order events were stored" {
	events 3000 | whk-ingest >out
	jq -r .event out >ids
	run sh -c 'sort -c ids && sort -u ids | wc -l'
	assert_output 3000
}

@test "usage: --help, --version, bad options and bad values" {
	run whk-ingest --help
	assert_success
	assert_line --index 0 --partial "usage: whk-ingest [-s store]"
	run whk-ingest -V
	assert_output "whk-ingest 0.1.0"
	run whk-ingest --bogus </dev/null
	assert_failure 2
	assert_line --index 1 --partial "usage: whk-ingest"
	run whk-ingest --map '.a |' </dev/null
	assert_failure 2
	assert_output --partial "whk-ingest: --map: invalid jq expression '.a |'"
	run whk-ingest --max-bytes 12Q </dev/null
	assert_failure 2
	assert_output "whk-ingest: --max-bytes: invalid size '12Q' (use bytes, or 64K, 1M)"
	[ ! -e "$WHK_STORE" ]
}

@test "-s chooses the store over WHK_STORE" {
	run whk-ingest -s other.db <<<'{"id":"x"}'
	assert_success
	[ -e other.db ] && [ ! -e "$WHK_STORE" ]
	run sqlite3 other.db "select key from events"
	assert_output x
}

@test "the validator agrees with a strict JSON parser on thousands of valid and broken lines" {
	python3 "$WHK_ROOT/tests/fixtures/json-cases.py" 7 3000 >in 3>verdicts
	# Rejected line numbers, from stderr; accepted ones are the rest.
	whk-ingest in 2>&1 >/dev/null |
	    sed -n 's/^whk-ingest: in: line \([0-9]*\): .*/\1/p' >rejected
	awk '$1 == "bad" { print NR }' verdicts >expected
	run diff expected rejected
	assert_output ""
	[ "$(wc -l <expected)" -gt 500 ] && [ "$(wc -l <expected)" -lt 2500 ]
}

@test "fields read by the validator equal what jq reads from the same events" {
	cat >in <<'LINES'
{"id":"a\u00e9\n\"q\"","type":"t\/1","tenant":"\ud83d\ude00"}
{"id":1e2,"tenant":-0,"type":"x"}
{"id":1.50,"tenant":12}
{"id":"dup","id":"last","type":"a","type":"b"}
{"i\u0064":"escaped-name","typ\u0065":"escaped-type"}
{"nested":{"id":"inner","type":"inner"},"id":"outer"}
{ "id" : "spaced" , "type" : "s" }
{"id":null,"type":null,"tenant":null}
{"id":"","type":"","tenant":""}
LINES
	whk-ingest in >/dev/null
	whk-ingest -s jq.db --key-from .id --type-from .type --tenant-from .tenant in >/dev/null
	q="select quote(key), quote(type), quote(tenant) from events order by seq"
	run sql "$q"
	assert_output "$(sqlite3 jq.db "$q")"
	run sql "select key from events order by seq limit 6"
	assert_output $'a\xc3\xa9\n"q"\n100\n1.5\nlast\nescaped-name\nouter'
}

@test "--max-bytes holds also when one read brings the whole long line" {
	{
		printf '{"id":"long","pad":"'
		head -c 100000 /dev/zero | tr '\0' a
		printf '"}\n{"id":"short"}\n'
	} >long
	run whk-ingest --max-bytes 64K long
	assert_failure 1
	assert_line --index 0 "whk-ingest: long: line 1: longer than --max-bytes (65536 bytes)"
	run sql "select key from events"
	assert_output short
}
