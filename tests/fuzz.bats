#!/usr/bin/env bats
# The fuzz targets of tests/fuzz/ replayed on their corpora, without
# libFuzzer: every saved input keeps every property its target checks.
# (make fuzz runs them under libFuzzer to find new inputs.)  Then what
# the targets found, as the programs show it.

load helpers

CORPUS="$BATS_TEST_DIRNAME/fuzz/corpus"

# replay TARGET: bin/fuzz-TARGET on its whole corpus, which is a few
# dozen files at least, every one of them replayed.
replay() {
	local n
	n=$(find "$CORPUS/$1" -type f | wc -l)
	[ "$n" -ge 24 ]
	run "fuzz-$1" "$CORPUS/$1"
	assert_success
	assert_output "fuzz-$1: $n inputs replayed"
}

@test "the ingest corpus keeps its properties: lines, checks and fields as whk-ingest(1) says, under five sets of options" {
	replay ingest
}

@test "the duration corpus keeps its properties: durations, times, WHK_NOW, sizes and schedules as the manuals say" {
	replay duration
}

@test "a bug put in on purpose fails the ingest replay: a type read one byte short" {
	run fuzz-ingest "$CORPUS/ingest/event"
	assert_success
	WHK_FUZZ_BREAK=1 run fuzz-ingest "$CORPUS/ingest/event"
	assert_failure 134
	assert_line --index 0 --regexp "^fuzz-ingest: property violated \(ingest.c:[0-9]+, options 0\): the type is 'order.create', not 'order.created'$"
	assert_line --index 1 --partial 'line: {"id":"ev-1","type":"order.created",'
}

@test "a bug put in on purpose fails the duration replay: a duration read 1 ms long" {
	run fuzz-duration "$CORPUS/duration/ms"
	assert_success
	WHK_FUZZ_BREAK=1 run fuzz-duration "$CORPUS/duration/ms"
	assert_failure 134
	assert_line --index 0 --regexp "^fuzz-duration: property violated \(duration.c:[0-9]+\): whk_parse_duration read 501 ms, not 500$"
	assert_line --index 1 "argument: 500ms"
}

@test "the replay fails on an input it cannot read, and on none at all" {
	mkdir empty
	run fuzz-ingest empty
	assert_failure 1
	assert_output "fuzz-ingest: 0 inputs replayed
fuzz-ingest: no inputs"
	run fuzz-duration "$CORPUS/duration/ms" missing
	assert_failure 1
	assert_output "fuzz-duration: cannot read 'missing': No such file or directory
fuzz-duration: 1 inputs replayed"
}

# --- what the targets found, as the programs show it ----------------------

# nest N: a line of N objects one in another, {"a":{"a":...{}...}}.
nest() {
	awk -v n="$1" 'BEGIN {
		for (i = 1; i < n; i++) printf "{\"a\":"
		printf "{}"
		for (i = 1; i < n; i++) printf "}"
		print ""
	}'
}

@test "whk-ingest passes only what jq 1.6 can parse, counting levels as jq does: 128 objects one in another pass, 129 do not" {
	{ nest 128; nest 129; } >in
	run sh -c 'whk-ingest in 2>&1 >/dev/null'
	assert_output "whk-ingest: in: line 2: nested deeper than 256 levels"
	# With --type-from, jq parses every line: it takes what was passed.
	run sh -c 'whk-ingest --type-from .type in 2>&1 >/dev/null'
	assert_output "whk-ingest: in: line 2: nested deeper than 256 levels"
	run sql "select count(*), count(distinct body) from events"
	assert_output "2|1"
}

@test "whk-ingest refuses a number key of 2^53 or more, which jq would round onto another: 2^53 + 1 is not stored as 2^53" {
	printf '{"id":%s}\n' 9007199254740991 9007199254740992 \
	    9007199254740993 9007199254740991.9 >in
	echo '{"tenant":-9007199254740993}' >>in
	run sh -c 'whk-ingest in 2>&1 >/dev/null'
	assert_output "whk-ingest: in: line 2: id is a number too large to keep exactly; send it as a string
whk-ingest: in: line 3: id is a number too large to keep exactly; send it as a string
whk-ingest: in: line 4: id is a number too large to keep exactly; send it as a string
whk-ingest: in: line 5: tenant is a number too large to keep exactly; send it as a string"
	run sql "select key from events"
	assert_output 9007199254740991
}
