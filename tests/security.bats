#!/usr/bin/env bats
# Security: each promise whk makes about where it sends, what it shows,
# the files it makes and the values it is given, tried end to end against
# the built programs and loopback receivers.
#   - Destinations (SSRF): private, loopback and link-local addresses are
#     refused unless the endpoint has --allow-private: by whk-endpoint add
#     and set, whatever the spelling, and by whk-deliver on the address it
#     connects to, whatever the store says; redirects are never followed.
#   - Secrets: no program prints an endpoint's secret, its old secret
#     during a rotation or a header value, in any output or error.
#   - Files: the store, its -wal and -shm are 0600 and its default
#     directory 0700, whatever the umask, whichever program makes them.
#   - Metacharacters: SQL, shell and terminal metacharacters in any value
#     are data: stored and shown back as given, or refused with exit 2;
#     never run, never SQL, and the store stays whole.

load helpers

bats_require_minimum_version 1.5.0

# Values that would do harm if a program handed them to SQL or to a shell:
# quotes, comments and statement ends, command substitutions (their
# canary is a file named canary in the test's directory), a newline, a
# tab, printf conversions, glob characters.
HOSTILE=(
	"' OR 1=1 --"
	'"; DROP TABLE events; --'
	'$(touch canary)'
	'`touch canary`'
	'a; touch canary | b && c'
	$'two\nlines'
	$'tab\there'
	'%s%n%x%99999999s'
	"it's \"quoted\" \\ back"
	'*?[a]{b}'
)

# --- helpers of this suite -------------------------------------------------

# try [-q] CMD...: run CMD; add to the file got its exit status, standard
# error and standard output (none with -q), as "STATUS|STDERR|STDOUT" (a
# test compares got with want, made by expect, once: cheaper than a run
# per command).
try() {
	local out rc=0
	if [ "$1" = -q ]; then
		shift
		"$@" >/dev/null 2>"$BATS_TEST_TMPDIR/try.err" || rc=$?
		out=
	else
		out=$("$@" 2>"$BATS_TEST_TMPDIR/try.err") || rc=$?
	fi
	printf '%s|%s|%s\n' "$rc" "$(<"$BATS_TEST_TMPDIR/try.err")" "$out" >>got
}

# try_start PREFIX CMD...: like try, for a message that ends in another
# library's words: whether standard error starts with PREFIX ("PREFIX..."
# then), and no standard output.
try_start() {
	local prefix=$1 out rc=0
	shift
	out=$("$@" 2>"$BATS_TEST_TMPDIR/try.err") || rc=$?
	case $(<"$BATS_TEST_TMPDIR/try.err") in
	"$prefix"*) printf '%s|%s...|%s\n' "$rc" "$prefix" "$out" >>got ;;
	*) printf '%s|%s|%s\n' "$rc" "$(<"$BATS_TEST_TMPDIR/try.err")" "$out" >>got ;;
	esac
}

# jq_leak: under LeakSanitizer, libjq 1.6's own leak when it fails to
# compile an unterminated string (its lexer's partial token, 21 bytes) is
# not reported; prefixed to the commands that give jq such a program.
jq_leak() {
	printf 'leak:libjq.so\n' >"$BATS_TEST_TMPDIR/lsan.supp"
	LSAN_OPTIONS="suppressions=$BATS_TEST_TMPDIR/lsan.supp:print_suppressions=0" "$@"
}

# expect STATUS STDERR [STDOUT]: what try should add to got, added to want.
expect() {
	printf '%s|%s|%s\n' "$1" "$2" "${3:-}" >>want
}

# tried: got is want.
tried() {
	run diff want got
	assert_success
}

# refusal URL HOST: whk-endpoint's message for a private destination.
refusal() {
	printf "whk-endpoint: refusing '%s': '%s' is a private, loopback or link-local address (use --allow-private to permit it)" "$1" "$2"
}

# refused ADDR: the error of an attempt whk-deliver refused to make.
refused() {
	printf 'refused to connect to %s: a private, loopback or link-local address (the endpoint needs --allow-private)' "$1"
}

# refused_loopback ERROR: ERROR is the refusal of a loopback address
# (which one a name's attempt names last, ::1 or 127.x, depends on the
# machine).
refused_loopback() {
	local a=${1#refused to connect to }
	a=${a%%: *}
	assert_equal "$1" "$(refused "$a")"
	assert_regex "$a" '^(::1|127[.][0-9]+[.][0-9]+[.][0-9]+)$'
}

# outside NAME: an endpoint NAME for the events of tenant NAME, at a
# public URL (a test points it elsewhere with behind).
outside() {
	whk-endpoint add "$1" https://example.com/hook --tenant "$1" \
	    --timeout 2s >/dev/null
}

# behind NAME URL: point endpoint NAME at URL without --allow-private,
# in the store itself, as sqlite3 or a restored backup could: none of
# whk-endpoint's checks sees it.
behind() {
	sql "UPDATE endpoints SET url = '$2', allow_private = 0
	    WHERE name = '$1'"
}

# aim: for each line "HOST ADDR" of stdin, an endpoint eN (outside),
# pointed behind whk-endpoint's back at http://HOST:$port/ok, an event
# for it (in the file ev), and in the file want the line "eN<TAB>the
# refusal of ADDR".  N counts on from $n.
aim() {
	local host addr
	while read -r host addr; do
		n=$((n + 1))
		outside "e$n"
		printf "UPDATE endpoints SET url = 'http://%s:%s/ok', allow_private = 0 WHERE name = 'e%d';\n" \
		    "$host" "$port" "$n" >>aim.sql
		printf '{"id":"e%d","tenant":"e%d"}\n' "$n" "$n" >>ev
		printf 'e%d\t%s\n' "$n" "$(refused "$addr")" >>want
	done
	sql <aim.sql
	rm aim.sql
}

# errors_of: whk-deliver's records in $output as "endpoint<TAB>error",
# sorted.
errors_of() {
	jq -r '[.endpoint, .error] | @tsv' <<<"$output" | sort
}

# attempts_of [NAME]: endpoint NAME's attempts (all, by endpoint, without
# NAME), oldest first, as "name|n|status|outcome|error" (the store's).
attempts_of() {
	sql "SELECT e.name, a.n, a.status, a.outcome, a.error FROM attempts a
	    JOIN endpoints e ON e.id = a.endpoint_id
	    WHERE e.name = '${1:-}' OR '${1:-}' = '' ORDER BY e.name, a.seq"
}

# intact: the store passes SQLite's integrity check and has every table,
# and no shell ran an injected command (no canary in the test's directory).
intact() {
	run sql "PRAGMA integrity_check; SELECT name FROM sqlite_master
	    WHERE type = 'table' ORDER BY name"
	assert_output $'ok\nattempts\nendpoints\nevents\nunrouted\nwebhook_events\nwebhooks'
	run ls -A "$BATS_TEST_TMPDIR"
	refute_output --partial canary
}

# js VALUE: VALUE as a JSON string, as jq -c writes it, for values whose
# only controls are newlines and tabs (HOSTILE's), without a process.
js() {
	local j=${1//\\/\\\\}
	j=${j//\"/\\\"}
	j=${j//$'\n'/\\n}
	printf '"%s"' "${j//$'\t'/\\t}"
}

# json_str VALUE: VALUE as a JSON string (for jq programs and events).
json_str() {
	jq -n --arg v "$1" '$v'
}

# on_tty CMD...: CMD with its standard output on a terminal (tables,
# progress lines), the terminal's output on ours.
on_tty() {
	local cmd
	printf -v cmd '%q ' "$@"
	script -qec "$cmd" /dev/null </dev/null | tr -d '\r'
}

# py_server HEADER BODY: an HTTP server on 127.0.0.1 (Python's, for the
# answers test-receiver cannot give) that answers each POST to /NNN with
# status NNN, the header line HEADER ("Name: value", or '') and BODY;
# it appends each request's path to its log.  Exports PYSRV (its base
# URL) and PYSRV_LOG; stopped with the receivers.
py_server() {
	local dir="$BATS_TEST_TMPDIR/pysrv" i
	mkdir -p "$dir" && : >"$dir/log"
	# exec: $! is then Python's own pid, which receivers_stop stops.
	(exec python3 -c '
import http.server, os, sys
header, body, dir = sys.argv[1], os.fsencode(sys.argv[2]), sys.argv[3]
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        with open(dir + "/log", "a") as f:
            f.write(self.path + "\n")
        self.send_response(int(self.path[1:4]))
        if header:
            self.send_header(*header.split(": ", 1))
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
with open(dir + "/port.tmp", "w") as f:
    f.write("%d\n" % s.server_address[1])
os.rename(dir + "/port.tmp", dir + "/port")
s.serve_forever()' "$1" "$2" "$dir") </dev/null >"$dir/stderr" 2>&1 3>&- &
	echo $! >>"$BATS_TEST_TMPDIR/receivers"
	for i in $(seq 200); do
		[ -s "$dir/port" ] && break
		sleep 0.025
	done
	[ -s "$dir/port" ] || { cat "$dir/stderr" >&2; return 1; }
	export PYSRV="http://127.0.0.1:$(cat "$dir/port")" PYSRV_LOG="$dir/log"
}

# --- destinations (SSRF) ---------------------------------------------------

@test "SSRF: add and set refuse private, loopback and link-local hosts in every spelling: exit 2, the exact message, nothing stored or changed; --allow-private accepts them" {
	whk-endpoint add pub https://example.com/hook >/dev/null
	before=$(whk-endpoint show pub --show-secret)
	# The URL, then its host as the message names it: the address curl
	# would connect to, in curl's own normal form.
	while read -r url host; do
		try whk-endpoint add p "$url"
		expect 2 "$(refusal "$url" "$host")"
		echo "$url" >>urls
	done <<-'EOF'
	http://127.0.0.1/ 127.0.0.1
	https://127.0.0.1:8443/x?y=1#z 127.0.0.1
	http://[::1]/ [::1]
	http://[::1]:8080/hook [::1]
	http://10.0.0.1/ 10.0.0.1
	http://169.254.169.254/latest/meta-data/ 169.254.169.254
	http://[::ffff:127.0.0.1]/ [::ffff:127.0.0.1]
	http://localhost/ localhost
	http://2130706433/ 127.0.0.1
	http://0177.0.0.1/ 127.0.0.1
	http://127.1/ 127.0.0.1
	http://0x7f.1/ 127.0.0.1
	http://127.000.000.001/ 127.0.0.1
	http://%31%32%37.0.0.1/ 127.0.0.1
	http://0.0.0.0/ 0.0.0.0
	http://0/ 0.0.0.0
	http://[::]/ [::]
	http://[0:0:0:0:0:ffff:7f00:1]/ [::ffff:127.0.0.1]
	http://[::ffff:7f00:1]/ [::ffff:7f00:1]
	http://[::ffff:169.254.169.254]/ [::ffff:169.254.169.254]
	http://[64:ff9b::a9fe:a9fe]/ [64:ff9b::a9fe:a9fe]
	http://[64:ff9b:1::808:808]/ [64:ff9b:1::808:808]
	http://[::ffff:0:7f00:1]/ [::ffff:0:7f00:1]
	http://[2002:7f00:1::]/ [2002:7f00:1::]
	http://[2002:a9fe:a9fe::1]/ [2002:a9fe:a9fe::1]
	http://[2001:0:4136:e378:8000:63bf:80ff:fffe]/ [2001:0:4136:e378:8000:63bf:80ff:fffe]
	http://[2001:0:a00:1:8000:63bf:f7f7:f7f7]/ [2001:0:a00:1:8000:63bf:f7f7:f7f7]
	http://[::1%25lo]/ [::1]
	http://[fe80::1%25eth0]/ [fe80::1]
	HTTP://127.0.0.1/ 127.0.0.1
	HTTP://LOCALHOST/ LOCALHOST
	http://LocalHost./ LocalHost.
	http://foo.localhost/ foo.localhost
	EOF
	# set refuses them by the same check.
	while read -r url host; do
		try whk-endpoint set pub --url "$url"
		expect 2 "$(refusal "$url" "$host")"
	done <<-'EOF'
	http://[::1]:8080/hook [::1]
	http://2130706433/ 127.0.0.1
	http://169.254.169.254/latest/meta-data/ 169.254.169.254
	http://LocalHost./ LocalHost.
	EOF
	# What looks like user information is judged by the host curl sees,
	# and user information itself is refused.
	for url in 'http://127.0.0.1#@example.com/' 'http://127.0.0.1?@example.com/'; do
		try whk-endpoint add p "$url"
		expect 2 "$(refusal 'http://********@example.com/' 127.0.0.1)"
	done
	for url in 'http://example.com@127.0.0.1/' 'http://127.0.0.1:80@example.com/'; do
		try whk-endpoint add p "$url"
		expect 2 "whk-endpoint: invalid URL 'http://********@${url##*@}': credentials belong in --header, not in the URL"
	done
	tried
	run sql "SELECT name FROM endpoints"
	assert_output pub
	run whk-endpoint show pub --show-secret
	assert_output "$before"
	# The operator's word lets each of them in.
	k=0
	while read -r url; do
		k=$((k + 1))
		whk-endpoint add "p$k" "$url" --allow-private >/dev/null
	done <urls
	[ "$k" -eq 33 ]
	run sql "SELECT url || ' ' || allow_private FROM endpoints WHERE name != 'pub' ORDER BY id"
	assert_output "$(sed 's/$/ 1/' urls)"
	# Public addresses, and public ones embedded in transition forms, pass.
	for url in 'http://[2606:4700::1111]/' 'http://[2002:808:808::1]/' \
	    'http://[64:ff9b::808:808]/' 'http://[::ffff:0:808:808]/' \
	    'http://[2001:0:808:808:8000:63bf:f7f7:f7f7]/'; do
		k=$((k + 1))
		try -q whk-endpoint add "p$k" "$url"
		expect 0 ""
	done
	tried
}

@test "SSRF at connect time: URLs put in the store behind whk-endpoint's back, in every spelling, are refused by the address connected to: a failed attempt with the reason, nothing sent; --allow-private then delivers them" {
	receiver_start
	port=${RECEIVER##*:}
	n=0
	# The host, then the address whk-deliver names: each reaches the
	# receiver (127.0.0.1) when allowed.
	aim <<-'EOF'
	127.0.0.1 127.0.0.1
	127.1 127.0.0.1
	2130706433 127.0.0.1
	0177.0.0.1 127.0.0.1
	0x7f.0.0.1 127.0.0.1
	127.000.000.001 127.0.0.1
	0.0.0.0 0.0.0.0
	0 0.0.0.0
	[::ffff:127.0.0.1] ::ffff:127.0.0.1
	[0:0:0:0:0:ffff:7f00:1] ::ffff:127.0.0.1
	[::ffff:7f00:1] ::ffff:127.0.0.1
	EOF
	reach=$n
	# These reach nothing (no receiver there): the refusal comes before
	# any connect, which would have failed otherwise.
	aim <<-'EOF'
	10.0.0.1 10.0.0.1
	169.254.169.254 169.254.169.254
	[::ffff:169.254.169.254] ::ffff:169.254.169.254
	[64:ff9b::a9fe:a9fe] 64:ff9b::a9fe:a9fe
	[2002:a9fe:a9fe::1] 2002:a9fe:a9fe::1
	[64:ff9b:1::a9fe:a9fe] 64:ff9b:1::a9fe:a9fe
	192.168.0.1 192.168.0.1
	EOF
	whk-ingest <ev | whk-batch >recs
	run --separate-stderr whk-deliver <recs
	assert_failure 1
	assert_equal "$(jq -c '[.outcome, .status]' <<<"$output" | sort -u)" '["failed",null]'
	run errors_of
	assert_output "$(sort want)"
	assert_equal "$(received | wc -l)" 0
	# Each is in the history as a failed attempt with its reason.
	assert_equal "$(attempts_of | LC_ALL=C sort)" \
	    "$(sed 's/\t/|1||failed|/' want | LC_ALL=C sort)"
	# The operator allows it: the same endpoints, the same webhooks, now
	# delivered, each to the receiver.
	for i in $(seq "$reach"); do
		whk-endpoint set "e$i" --allow-private >/dev/null
	done
	jq -r --argjson r "$reach" 'select((.endpoint[1:] | tonumber) <= $r) | .webhook' \
	    recs | sort >ids
	[ "$(wc -l <ids)" -eq "$reach" ]
	run --separate-stderr eval 'whk-retry --now $(cat ids) | whk-deliver'
	assert_success
	assert_equal "$(jq -r 'select(.outcome == "delivered") | .webhook' <<<"$output" | sort)" "$(cat ids)"
	assert_equal "$(received | jq -r .id | sort)" "$(cat ids)"
}

@test "SSRF at connect time, IPv6: [::1] and its spellings are refused, nothing sent; --allow-private delivers" {
	receiver_start --bind ::1 2>/dev/null || skip "no IPv6 loopback here"
	port=${RECEIVER##*:}
	n=0
	aim <<-'EOF'
	[::1] ::1
	[0:0:0:0:0:0:0:1] ::1
	[::0.0.0.1] ::1
	[::1%25lo] ::1
	[::] ::
	EOF
	whk-ingest <ev | whk-batch >recs
	run --separate-stderr whk-deliver <recs
	assert_failure 1
	run errors_of
	assert_output "$(sort want)"
	assert_equal "$(received | wc -l)" 0
	sql "UPDATE endpoints SET allow_private = 1"
	jq -r .webhook recs | sort >ids
	run --separate-stderr eval 'whk-retry --now $(cat ids) | whk-deliver'
	assert_success
	assert_equal "$(received | jq -r .id | sort)" "$(cat ids)"
}

@test "SSRF by name: names that resolve to loopback are refused at connect time, whatever their case or a trailing dot; --allow-private delivers them" {
	receiver_start
	port=${RECEIVER##*:}
	n=0
	# localhost is refused at add already; in the store, at connect.
	# (Which address of a name is refused last, ::1 or 127.0.0.1, depends
	# on the machine: want is not used.)
	aim <<-'EOF'
	localhost -
	LocalHost -
	127.0.0.1. -
	localhost. -
	EOF
	# The machine's own name, where it resolves to loopback, passes add:
	# a name is judged by what it resolves to when a request connects.
	host=$(hostname)
	case $(getent ahosts "$host" | awk '{ print $1; exit }') in
	127.* | ::1)
		run --separate-stderr whk-endpoint add named "http://$host:$port/ok" \
		    --tenant named
		assert_success
		assert_equal "$(jq .allow_private <<<"$output")" false
		echo '{"id":"named","tenant":"named"}' >>ev
		;;
	*)
		echo "# '$host' does not resolve to loopback here: not tried" >&3
		;;
	esac
	whk-ingest <ev | whk-batch >recs
	run --separate-stderr whk-deliver <recs
	assert_failure 1
	[ "${#lines[@]}" -eq "$(wc -l <ev)" ]
	for l in "${lines[@]}"; do
		e=$(jq -r .error <<<"$l")
		case $(jq -r .endpoint <<<"$l") in
		# A trailing dot makes no other name of them: if it resolves.
		e3) [ "$e" = "Could not resolve host: 127.0.0.1." ] ||
		    refused_loopback "$e" ;;
		e4) [ "$e" = "Could not resolve host: localhost." ] ||
		    refused_loopback "$e" ;;
		*) refused_loopback "$e" ;;
		esac
	done
	assert_equal "$(received | wc -l)" 0
	# Allowed, the names without a dot are delivered.
	jq -r 'select(.endpoint | test("^(e1|e2|named)$")) | .endpoint' recs |
	    while read -r e; do
		whk-endpoint set "$e" --allow-private >/dev/null
	done
	jq -r 'select(.endpoint | test("^(e1|e2|named)$")) | .webhook' recs | sort >ids
	run --separate-stderr eval 'whk-retry --now $(cat ids) | whk-deliver'
	assert_success
	assert_equal "$(received | jq -r .id | sort)" "$(cat ids)"
}

@test "SSRF at connect time: --allow-private cleared in the store is obeyed by the next attempt; nothing more is sent" {
	receiver_start
	ep inside /ok
	hooks inside 1 >recs
	run whk-deliver <recs
	assert_success
	assert_equal "$(received | wc -l)" 1
	sql "UPDATE endpoints SET allow_private = 0 WHERE name = 'inside'"
	run --separate-stderr eval 'whk-retry --now $(jq -r .webhook recs) | whk-deliver'
	assert_failure 1
	like "$output" "{\"webhook\":\"@MSG@\",\"endpoint\":\"inside\",\"attempt\":2,\"kind\":\"resend\",\"status\":null,\"ms\":@N@,\"outcome\":\"failed\",\"error\":\"$(refused 127.0.0.1)\"}"
	assert_equal "$(received | wc -l)" 1
}

@test "SSRF at connect time: a connection kept alive for an endpoint allowed a private address is not reused by one that is not" {
	receiver_start
	ep inside /ok
	outside stranger
	behind stranger "$RECEIVER/ok"
	hooks inside 2 >in.recs
	hooks stranger 1 >out.recs
	# One deliverer: inside's first webhook opens a connection to the
	# receiver and keeps it; stranger's comes when it is idle; then
	# inside's second may use it again.
	run --separate-stderr eval '{ head -n 1 in.recs; wait_received 1 >&2
	    cat out.recs; sleep 0.2; tail -n 1 in.recs; } | whk-deliver'
	assert_failure 1
	assert_equal "$(jq -c '[.endpoint, .outcome, .error]' <<<"$output")" \
	    "[\"inside\",\"delivered\",null]
[\"stranger\",\"failed\",\"$(refused 127.0.0.1)\"]
[\"inside\",\"delivered\",null]"
	assert_equal "$(received | jq -r .id)" "$(jq -r .webhook in.recs)"
	run attempts_of stranger
	assert_output "stranger|1||failed|$(refused 127.0.0.1)"
}

@test "redirects are never followed: 301, 302, 303, 307 and 308 to a private address are failed attempts; the target never hears of it, on retry nor resend" {
	receiver_start
	py_server "Location: $RECEIVER/ok" ''
	for s in 301 302 303 307 308; do
		whk-endpoint add "r$s" "$PYSRV/$s" --allow-private --tenant "r$s" >/dev/null
		hooks "r$s" 1
	done >recs
	# test-receiver's own: a relative Location to /ok.
	ep rel /redirect
	hooks rel 1 >>recs
	run --separate-stderr whk-deliver <recs
	assert_failure 1
	run eval "jq -r '[.endpoint, .status, .outcome, .error] | @tsv' <<<\"\$output\" | sort"
	assert_output "$(printf 'r%d\t%d\tfailed\tHTTP %d\n' 301 301 301 302 302 302 \
	    303 303 303 307 307 307 308 308 308)
rel	302	failed	HTTP 302"
	# Their retries and a resend go to the endpoint's own URL again.
	whk-retry --schedule 1s >/dev/null
	WHK_NOW=$(($(date +%s) + 5)) run --separate-stderr eval 'whk-retry | whk-deliver'
	assert_failure 1
	run --separate-stderr eval 'whk-retry --now $(jq -r .webhook recs) | whk-deliver'
	assert_failure 1
	assert_equal "$(jq -r .status <<<"$output" | sort -u | tr '\n' ' ')" "301 302 303 307 308 "
	run sort "$PYSRV_LOG"
	assert_output "$(for s in 301 302 303 307 308; do printf '/%d\n' $s $s $s; done)"
	run eval 'received | jq -r .path'
	assert_output $'/redirect\n/redirect\n/redirect'
}

# --- secrets ---------------------------------------------------------------

# all CMD...: CMD's standard output and error, whatever its status, added
# to all.out (what a secret must never be found in).
all() {
	"$@" >>all.out 2>&1 || true
}

@test "secrets: no secret, old secret of a rotation or header value is in any byte any program prints, in any command, format or error; --show-secret alone shows them" {
	S1=$(secret_of)
	S2=$(secret_of 48)
	S3=$(secret_of 24)
	S4=$(secret_of)
	HV=hv-$(head -c 18 /dev/urandom | base64 -w0 | tr '+/' '-_')
	receiver_start
	# ok delivers, failing gets 500s, closed finds no one listening,
	# stranger is refused (private), broken has a secret the store
	# holds damaged.
	all whk-endpoint add ok "$RECEIVER/ok" --allow-private --tenant t \
	    --secret "$S1" --header "X-Api-Key: $HV"
	all whk-endpoint add failing "$RECEIVER/fail" --allow-private --tenant t \
	    --secret "$S3" --header "X-Api-Key: $HV"
	all whk-endpoint add closed http://127.0.0.1:1/ --allow-private --tenant t \
	    --secret "$S3" --header "X-Token: $HV"
	all whk-endpoint add stranger https://example.com/ --tenant t --secret "$S3"
	behind stranger "$RECEIVER/ok"
	all whk-endpoint add broken "$RECEIVER/ok" --allow-private --tenant b
	sql "UPDATE endpoints SET secret = '${S4}!' WHERE name = 'broken'"
	all whk-endpoint rotate-secret ok --secret "$S2" --grace 1h
	for f in json table; do
		all whk-endpoint list --format "$f"
	done
	all on_tty whk-endpoint list
	for e in ok stranger; do
		all whk-endpoint show "$e"
	done
	all whk-endpoint set ok --batch 1
	all whk-endpoint disable failing --reason "maintenance"
	all whk-endpoint enable failing
	# Mistakes, each naming a secret or a header value.
	all whk-endpoint add ok "$RECEIVER/ok" --secret "$S1"
	all whk-endpoint set ok --batch 0 --secret "$S1"
	all whk-endpoint set ok --secret "${S2}x"
	all whk-endpoint rotate-secret ok --secret "${S1%?}"
	all whk-endpoint set ok --header "Bad Name: $HV"
	all whk-endpoint set ok --header "X-Api-Key: $HV"$'\r\n'"X: y"
	all whk-endpoint set ok --url "http://u:$HV@example.com/"
	all whk-endpoint show ok --secret "$S2"
	# The pipeline, every stage heard.
	printf '{"id":"o-%d","tenant":"t","n":%d}\n' 1 1 2 2 >ev
	whk-ingest <ev 2>>all.out | tee -a all.out | whk-batch -v 2>>all.out |
	    tee -a all.out | whk-deliver -v >>all.out 2>>all.out || true
	all on_tty whk-deliver --pending
	all whk-retry -v --schedule 1s
	all whk-retry --dry-run -v
	WHK_NOW=$(($(date +%s) + 5)) whk-retry -v 2>>all.out | tee -a all.out |
	    whk-deliver -v >>all.out 2>>all.out || true
	whk-log webhooks --jq .webhook | tr -d '"' >ids
	whk-retry --now -v $(cat ids) 2>>all.out | tee -a all.out |
	    whk-deliver -v >>all.out 2>>all.out || true
	# The history, in every command and format.
	for l in events webhooks attempts endpoints; do
		for f in tsv table; do
			all whk-log "$l" --format "$f"
		done
		all whk-log "$l" --jq tostring
		all on_tty whk-log "$l"
	done
	# A webhook of each endpoint, and an event.
	for id in $(whk-log webhooks --jq '.endpoint + " " + .webhook' |
	    tr -d '"' | sort -u -k1,1 | cut -d ' ' -f2) \
	    $(whk-log events -l 1 --jq .event | tr -d '"'); do
		all whk-log show "$id"
		all whk-log show --format table "$id"
	done
	all whk-log metrics
	for c in slo stats; do
		all whk-log "$c"
		all whk-log "$c" --format table
		all on_tty whk-log "$c"
	done
	all whk-log prune --before 1d --dry-run
	whk-log follow >follow.out 2>&1 3>&- &
	follower=$!
	echo "$follower" >>"$BATS_TEST_TMPDIR/receivers"
	sleep 0.5
	whk-retry --now "$(head -n 1 ids)" | whk-deliver >/dev/null 2>&1 || true
	for i in $(seq 100); do
		[ -s follow.out ] && break
		sleep 0.05
	done
	kill -INT "$follower"
	wait "$follower" || true
	[ -s follow.out ]
	cat follow.out >>all.out
	# The damaged secret stops whk-deliver, saying so without it.
	printf '{"id":"b-1","tenant":"b"}\n' | whk-ingest 2>>all.out |
	    whk-batch 2>>all.out | whk-deliver >>all.out 2>>all.out || true
	# Help, versions, and wrong options.
	for p in whk-ingest whk-endpoint whk-batch whk-deliver whk-retry whk-log; do
		all "$p" --help
		all "$p" -V
		all "$p" --no-such-option "$S1"
	done
	all whk-deliver --concurrency 0
	all whk-retry --schedule 1x
	all whk-log events --since 1x
	all whk-log show msg_00000000000000000000000000
	[ "$(wc -l <all.out)" -gt 150 ]
	[ "$(grep -c '^body  ' all.out)" -eq 5 ]
	for s in "$S1" "$S2" "$S3" "$S4"; do
		for v in "$s" "${s#whsec_}" "${s:6:12}" "${s: -12}"; do
			run grep -F -- "$v" all.out
			assert_failure 1
			assert_output ""
		done
	done
	for v in "$HV" "${HV:3:12}"; do
		run grep -F -- "$v" all.out
		assert_failure 1
		assert_output ""
	done
	# They were there to find: sent, and shown on request.
	assert_equal "$(received | jq -r '.headers["x-api-key"]' | sort -u)" "$HV"
	run whk-endpoint show ok --show-secret
	assert_equal "$(jq -r '[.secret, .old_secret, .headers[0]] | join(" ")' <<<"$output")" \
	    "$S2 $S1 X-Api-Key: $HV"
}

# --- files -----------------------------------------------------------------

# hold DB PROGRAM [ARGS...]: start PROGRAM -s DB in the background, reading
# a FIFO that stays open, so that it holds the store open; wait until
# DB-wal and DB-shm exist.  Its pid in $held; release stops it (and
# receivers_stop, at the latest).
hold() {
	local db=$1 i
	shift
	rm -f hold.in
	mkfifo hold.in
	"$@" -s "$db" <hold.in >hold.out 2>hold.err 3>&- &
	held=$!
	# (Stopped with the receivers, should the test fail before release.)
	echo "$held" >>"$BATS_TEST_TMPDIR/receivers"
	exec 4>hold.in
	for i in $(seq 200); do
		[ -e "$db-wal" ] && [ -e "$db-shm" ] && return 0
		sleep 0.05
	done
	echo "$* made no $db-wal and $db-shm in 10 s: $(cat hold.err)" >&2
	return 1
}

# release: end what hold started (its input closed; follow needs a signal).
release() {
	exec 4>&-
	kill -INT "$held" 2>/dev/null || true
	wait "$held" || true
}

@test "files: every program creates the store 0600, its -wal and -shm 0600, under umask 000 and 022" {
	for u in 000 022; do
		for p in whk-ingest whk-batch whk-deliver whk-retry "whk-log follow"; do
			db="$u.${p#whk-}.db"
			db=${db// /-}
			umask "$u"
			# (Word splitting wanted: "whk-log follow".)
			# shellcheck disable=SC2086
			hold "$db" $p
			umask 022
			run stat -c '%a %n' "$db" "$db-wal" "$db-shm"
			assert_output "600 $db
600 $db-wal
600 $db-shm"
			release
		done
		# whk-endpoint does not wait on anything: its store (SQLite
		# gives the -wal and -shm the store's own mode).
		(umask "$u"; whk-endpoint -s "$u.endpoint.db" list >/dev/null)
		run mode "$u.endpoint.db"
		assert_output 600
	done
}

@test "files: the default store's directory is created 0700 and the store 0600, by every program, under umask 000 and 022" {
	unset WHK_STORE
	: >want
	for u in 000 022; do
		for p in whk-ingest whk-endpoint whk-batch whk-deliver whk-retry whk-log; do
			case $p in
			whk-endpoint) args=(list) ;;
			whk-log) args=(events) ;;
			*) args=() ;;
			esac
			d="$BATS_TEST_TMPDIR/xdg.$u.$p"
			(umask "$u"; XDG_DATA_HOME=$d "$p" "${args[@]}" </dev/null >/dev/null)
			printf '700 %s\n600 %s\n' "$d/whk" "$d/whk/whk.db" >>want
			stat -c '%a %n' "$d/whk" "$d/whk/whk.db" >>got
		done
		# Under HOME, the same code makes the same directory.
		h="$BATS_TEST_TMPDIR/home.$u"
		(umask "$u"; HOME=$h whk-ingest </dev/null >/dev/null)
		printf '700 %s\n600 %s\n' "$h/.local/share/whk" "$h/.local/share/whk/whk.db" >>want
		stat -c '%a %n' "$h/.local/share/whk" "$h/.local/share/whk/whk.db" >>got
	done
	tried
}

# --- metacharacters --------------------------------------------------------

@test "metacharacters: a hostile endpoint name is refused (exit 2, the exact message) by every command that takes one, or names no endpoint; the store intact" {
	whk-endpoint add a https://example.com/ >/dev/null
	cmds=(add set disable enable rotate-secret rm)
	logs=(events webhooks attempts endpoints slo stats)
	k=0
	for v in "${HOSTILE[@]}"; do
		# The name is checked before anything else: show for each
		# value, and each other command for some.
		c=${cmds[$((k % 6))]}
		args=("$c" "$v")
		[ "$c" = add ] && args+=(https://example.com/)
		try whk-endpoint show "$v"
		try whk-endpoint "${args[@]}"
		for i in 1 2; do
			expect 2 "whk-endpoint: invalid endpoint name '$v' (letters, digits, '.', '_' and '-', at most 64)"
		done
		try whk-deliver --endpoint "$v" </dev/null
		expect 2 "whk-deliver: no endpoint '$v'"
		try whk-retry --now --endpoint "$v"
		expect 2 "whk-retry: no endpoint '$v'"
		try whk-log "${logs[$((k % 6))]}" --endpoint "$v"
		expect 0 ""
		k=$((k + 1))
	done
	tried
	run sql "SELECT name FROM endpoints"
	assert_output a
	intact
}

@test "metacharacters: an endpoint's tenant, header value, reason, types, URL, filter and template take hostile values byte for byte or refuse them with exit 2; delivered as data" {
	receiver_start
	k=0
	for v in "${HOSTILE[@]}"; do
		k=$((k + 1))
		j=$(js "$v")
		# eN takes its event by tenant and filter, and shapes the
		# body with the value as a string.
		add=(add "e$k" "$RECEIVER/ok" --allow-private --tenant "$v"
		    --filter ".note == $j" --template "{note: .note, tag: $j}")
		if [ "$v" = $'two\nlines' ]; then
			try whk-endpoint "${add[@]}" --header "X-Hostile: $v"
			expect 2 "whk-endpoint: --header: invalid value for header 'X-Hostile' (a line break or control character)"
			whk-endpoint "${add[@]}" >/dev/null
		else
			whk-endpoint "${add[@]}" --header "X-Hostile: $v" >/dev/null
		fi
		# rN takes the value, where it may, as its URL's query, its
		# types and its reason (one line); a schedule is durations,
		# and the value is no jq program.
		whk-endpoint add "r$k" https://example.com/ --tenant none >/dev/null
		url="https://example.com/?q=$v"
		try -q whk-endpoint set "r$k" --url "$url"
		case $v in
		*[[:space:]\'\"\\\`]*)
			expect 2 "whk-endpoint: invalid URL '$url': Bad query" ;;
		*) expect 0 "" ;;
		esac
		try -q whk-endpoint set "r$k" --types "$v"
		case $v in
		*[[:space:]\'\"\;\(\`]*)
			expect 2 "whk-endpoint: --types: blank or control character in type list '$v'" ;;
		*) expect 0 "" ;;
		esac
		try -q whk-endpoint disable "r$k" --reason "$v"
		if [ "$v" = $'two\nlines' ]; then
			expect 2 "whk-endpoint: --reason: one line of at most 1024 bytes"
		else
			expect 0 ""
		fi
		try_start "whk-endpoint: --schedule: " whk-endpoint set "r$k" --schedule "$v"
		expect 2 "whk-endpoint: --schedule: ..."
		p="whk-endpoint: --filter: invalid jq expression '$v': "
		jq_leak try_start "$p" whk-endpoint set "r$k" --filter "$v"
		expect 2 "$p..."
	done
	tried
	# Stored and shown back as given, where taken.
	whk-endpoint list --show-secret | jq -c '[.endpoint, .tenant, .filter,
	    .template, .headers, .url, .types, .disabled_reason]' |
	    LC_ALL=C sort >got
	jq -c -n --arg url "$RECEIVER/ok" '$ARGS.positional | to_entries[] |
	    .value as $v | ($v | tojson) as $j | "e\(.key + 1)" as $e |
	    "r\(.key + 1)" as $r | ($v | test("[\\s\u0027\"\\\\`]") | not) as $query |
	    ($v | test("[\\s\u0027\";(`]") | not) as $types |
	    ($v | test("\n") | not) as $line |
	    [$e, $v, ".note == \($j)", "{note: .note, tag: \($j)}",
	    if $line then ["X-Hostile: \($v)"] else [] end, $url,
	    null, null],
	    [$r, "none", null, null, [],
	    if $query then "https://example.com/?q=\($v)" else "https://example.com/" end,
	    if $types then [$v] else null end, if $line then $v else null end]' \
	    --args "${HOSTILE[@]}" | LC_ALL=C sort >want
	tried
	# Each endpoint got its own event's note, shaped by its template,
	# and its header, byte for byte, and nothing else.
	jq -c -n '$ARGS.positional | to_entries[] | .value as $v |
	    {id: "m\(.key)", tenant: $v, note: $v},
	    {id: "d\(.key)", tenant: $v, note: "other"}' --args "${HOSTILE[@]}" |
	    whk-ingest | whk-batch >recs
	run --separate-stderr whk-deliver <recs
	assert_success
	[ "${#lines[@]}" -eq "$k" ]
	received | jq -c --slurpfile r recs '. as $q | ($r[] | select(.webhook == $q.id)
	    | .endpoint) as $e | [$e, (.body | fromjson), .headers["x-hostile"]]' |
	    LC_ALL=C sort >got
	jq -c -n '$ARGS.positional | to_entries[] | ["e\(.key + 1)",
	    {note: .value, tag: .value},
	    (if .value == "two\nlines" then null else .value end)]' \
	    --args "${HOSTILE[@]}" | LC_ALL=C sort >want
	tried
	run sql "SELECT count(*) FROM endpoints; SELECT count(*) FROM events"
	assert_output $((2 * k))$'\n'$((2 * k))
	intact
}

@test "metacharacters: events' keys, types and tenants are stored byte for byte and found by whk-log's filters by their exact value only; jq programs take them as strings" {
	jq -c -n '$ARGS.positional | to_entries[] |
	    {id: "\(.key + 1)\(.value)", type: .value, tenant: .value}' \
	    --args "${HOSTILE[@]}" >ev
	run --separate-stderr whk-ingest <ev
	assert_success
	[ "${#lines[@]}" -eq "${#HOSTILE[@]}" ]
	jqs=("whk-log events --jq" "whk-ingest --key-from" "whk-ingest --require"
	    "whk-ingest --map")
	k=0
	for v in "${HOSTILE[@]}"; do
		k=$((k + 1))
		j=$(js "$v")
		for f in --key --type --tenant; do
			a=$v
			[ "$f" = --key ] && a=$k$v
			try whk-log events "$f" "$a" --jq '[.key, .type, .tenant]'
			expect 0 "" "[$(js "$k$v"),$j,$j]"
		done
		# Through --jq, as a string in the program.
		try whk-log events --jq "select(.tenant == $j) | .key"
		expect 0 "" "$(js "$k$v")"
		# As a program, refused (by one program or another).
		c=${jqs[$((k % 4))]}
		p="${c%% *}: ${c##* }: invalid jq expression '$v': "
		jq_leak try_start "$p" $c "$v" </dev/null
		expect 2 "$p..."
	done
	tried
	# whk-ingest's own jq options, with a value as a string.
	v=${HOSTILE[1]}
	j=$(js "$v")
	run --separate-stderr whk-ingest --key-from "\"k\" + $j" --type-from "$j" \
	    --require ".tenant == $j" --map ". + {m: $j}" <ev
	assert_failure 1
	assert_equal "$stderr" "$(printf 'whk-ingest: line %d: --require is not true\n' 1 3 4 5 6 7 8 9 10)"
	assert_equal "$(jq -c '[.key, .type]' <<<"$output")" "[$(js "k$v"),$j]"
	run whk-log events --key "k$v" --jq .body.m
	assert_output "$j"
	run sql "SELECT count(*) FROM events"
	assert_output $((k + 1))
	intact
}

@test "metacharacters: hostile ids and times given to whk-log show, whk-retry --now and on stdin name nothing: the exact message, nothing resent; --since, --until, --before refuse them with exit 2" {
	receiver_start
	ep a /ok
	hooks a 1 >recs
	whk-deliver <recs >/dev/null
	id=$(jq -r .webhook recs)
	evt=$(sql "SELECT id FROM events")
	ids=("${HOSTILE[@]}" "$id' OR '1'='1" "$id%" "${id%?}_" "$id;" "$evt' --")
	k=0
	for v in "${ids[@]}"; do
		try whk-log show "$v"
		expect 1 "whk-log: no event or webhook '$v'"
		try whk-retry --now "$v"
		expect 1 "whk-retry: no webhook '$v'"
		# Times: one option or another, by one program or another.
		case $((k++ % 4)) in
		0) try whk-log webhooks --since "$v"
		   expect 2 "whk-log: --since: '$v' is not a time (Unix seconds, RFC 3339, or a duration ago such as 1h)" ;;
		1) try whk-retry --now --until "$v"
		   expect 2 "whk-retry: --until: '$v' is not a time (Unix seconds, RFC 3339, or a duration ago such as 1h)" ;;
		2) try whk-retry --now --since "$v"
		   expect 2 "whk-retry: --since: '$v' is not a time (Unix seconds, RFC 3339, or a duration ago such as 1h)" ;;
		3) try whk-log prune --before "$v" --dry-run
		   expect 2 "whk-log: --before: invalid duration '$v' (use 500ms, 5s, 10m, 2h, 7d)" ;;
		esac
	done
	tried
	# On stdin, as records, with a NUL where JSON allows one.
	for v in "${ids[@]}"; do
		printf '{"webhook":%s}\n' "$(js "$v")"
	done >bad
	printf '{"webhook":"%s"}\n' "$id\u0000" "\u0000$id" "$id\u0001" >>bad
	n=$(wc -l <bad)
	run --separate-stderr whk-retry --now <bad
	assert_failure 1
	assert_output ""
	[ "$(grep -c '^whk-retry: line [0-9]*: ' <<<"$stderr")" -eq "$n" ]
	run --separate-stderr whk-deliver <bad
	assert_failure 1
	assert_output ""
	[ "$(grep -c '^whk-deliver: line [0-9]*: ' <<<"$stderr")" -eq "$n" ]
	run sql "SELECT state, attempts, resend, next_at IS NULL FROM webhooks"
	assert_output "delivered|1|0|1"
	assert_equal "$(received | wc -l)" 1
	intact
}

@test "metacharacters: a store path with spaces, quotes, a semicolon, \$(...), backticks and a newline is a plain file name to every program; so are names SQLite would read as a URI or as memory" {
	receiver_start
	mkdir "we ird"
	name="a b'c\"d;e\$(touch canary)\`touch canary\`|&"$'\n'"f.db"
	db="$BATS_TEST_TMPDIR/we ird/$name"
	whk-endpoint -s "$db" add a "$RECEIVER/ok" --allow-private --tenant a >/dev/null
	run --separate-stderr eval 'printf "{\"id\":\"1\",\"tenant\":\"a\"}\n" |
	    whk-ingest -s "$db" | whk-batch -s "$db" | whk-deliver -s "$db"'
	assert_success
	assert_equal "$(jq -r .outcome <<<"$output")" delivered
	run --separate-stderr eval 'WHK_STORE=$db whk-retry --now --endpoint a |
	    WHK_STORE=$db whk-deliver'
	assert_success
	run whk-log -s "$db" attempts --jq .kind
	assert_output $'"resend"\n"first"'
	assert_equal "$(cd "we ird" && printf '%s\n' *)" "$name"
	run mode "$db"
	assert_output 600
	run sqlite3 "$db" "SELECT count(*) FROM attempts"
	assert_output 2
	[ ! -e "we ird/canary" ]
	# SQLite reads a name that starts with "file:" as a URI, and
	# ":memory:" as no file: to whk each is the file of that name.
	whk-endpoint -s y.db add other https://example.com/ >/dev/null
	for s in 'file:x.db?mode=memory&cache=shared' ':memory:' 'file:y.db'; do
		run --separate-stderr whk-endpoint -s "$s" add b https://example.com/
		assert_success
		run --separate-stderr whk-endpoint -s "$s" list
		assert_success
		assert_equal "$(jq -r .endpoint <<<"$output")" b
		run sqlite3 "./$s" "SELECT name FROM endpoints"
		assert_output b
		run mode "$s"
		assert_output 600
	done
	[ ! -e x.db ]
	run sqlite3 y.db "SELECT name FROM endpoints"
	assert_output other
	WHK_STORE=$db intact
}

# controls FILE: the lines of FILE that hold a terminal control: a C0
# control other than tab and newline, DEL, or a C1 control (UTF-8).
controls() {
	LC_ALL=C grep -naP '[\x00-\x08\x0b-\x1f\x7f]|\xc2[\x80-\x9f]' "$1"
}

@test "metacharacters: terminal controls in events and in receivers' answers are shown escaped by whk-log, never sent to the terminal" {
	esc=$'\e]0;owned\a\e[2J\e[31m\x7f\xc2\x9b1m'
	py_server '' "answer $esc"
	whk-endpoint add t "$PYSRV/200" --allow-private --tenant "t" >/dev/null
	jq -c -n --arg v "$esc" '{id: ("k" + $v), type: ("y" + $v), tenant: "t", note: $v}' |
	    whk-ingest | whk-batch | whk-deliver >/dev/null
	[ "$(sql "SELECT count(*) FROM attempts WHERE outcome = 'delivered'")" -eq 1 ]
	sql "SELECT response FROM attempts" | grep -qF "$esc"
	id=$(sql "SELECT id FROM webhooks")
	evt=$(sql "SELECT id FROM events")
	: >all.out
	for l in events webhooks attempts; do
		all whk-log "$l" --format table
		all whk-log "$l" --format tsv
		all on_tty whk-log "$l"
	done
	for i in "$id" "$evt"; do
		all whk-log show --format table "$i"
		all on_tty whk-log show "$i"
	done
	[ "$(wc -l <all.out)" -gt 20 ]
	run controls all.out
	assert_failure 1
	assert_output ""
	# What stands in their place.
	run whk-log events --format tsv
	assert_line --index 1 --partial $'\tk\\x1b]0;owned\\x07\\x1b[2J\\x1b[31m\\x7f\\u009b1m\ty\\x1b]0;owned'
	run whk-log show --format table "$id"
	assert_line --partial 'answer \x1b]0;owned\x07\x1b[2J\x1b[31m\x7f\u009b1m'
	# In JSON they are JSON's escapes, as ever.
	run eval "whk-log show $id | jq '.attempts[0].response'"
	assert_output "$(json_str "answer $esc")"
}
