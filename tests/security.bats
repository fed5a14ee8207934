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

# errors_of: whk-deliver's records in $output as "endpoint<TAB>error",
# sorted.
errors_of() {
	jq -r '[.endpoint, .error] | @tsv' <<<"$output" | sort
}

# attempts_of NAME: endpoint NAME's attempts, oldest first, as
# "n|status|outcome|error" (the store's record).
attempts_of() {
	sql "SELECT a.n, a.status, a.outcome, a.error FROM attempts a
	    JOIN endpoints e ON e.id = a.endpoint_id WHERE e.name = '$1'
	    ORDER BY a.seq"
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

# json_str VALUE: VALUE as a JSON string (for jq programs and events).
json_str() {
	jq -n --arg v "$1" '$v'
}

# py_server HEADER BODY: an HTTP server on 127.0.0.1 (Python's, for the
# answers test-receiver cannot give) that answers each POST to /NNN with
# status NNN, the header line HEADER ("Name: value", or '') and BODY;
# it appends each request's path to its log.  Exports PYSRV (its base
# URL) and PYSRV_LOG; stopped with the receivers.
py_server() {
	local dir="$BATS_TEST_TMPDIR/pysrv" i
	mkdir -p "$dir" && : >"$dir/log"
	py -c '
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
s.serve_forever()' "$1" "$2" "$dir" </dev/null >"$dir/stderr" 2>&1 3>&- &
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
		run --separate-stderr whk-endpoint add p "$url"
		assert_failure 2
		assert_output ""
		assert_equal "$stderr" "$(refusal "$url" "$host")"
		run --separate-stderr whk-endpoint set pub --url "$url"
		assert_failure 2
		assert_output ""
		assert_equal "$stderr" "$(refusal "$url" "$host")"
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
	http://[::1%25lo]/ [::1]
	http://[fe80::1%25eth0]/ [fe80::1]
	HTTP://127.0.0.1/ 127.0.0.1
	HTTP://LOCALHOST/ LOCALHOST
	http://LocalHost./ LocalHost.
	http://foo.localhost/ foo.localhost
	EOF
	# What looks like user information is judged by the host curl sees,
	# and user information itself is refused.
	for url in 'http://127.0.0.1#@example.com/' 'http://127.0.0.1?@example.com/'; do
		run --separate-stderr whk-endpoint add p "$url"
		assert_failure 2
		assert_equal "$stderr" "$(refusal 'http://********@example.com/' 127.0.0.1)"
	done
	for url in 'http://example.com@127.0.0.1/' 'http://127.0.0.1:80@example.com/'; do
		run --separate-stderr whk-endpoint add p "$url"
		assert_failure 2
		assert_equal "$stderr" "whk-endpoint: invalid URL 'http://********@${url##*@}': credentials belong in --header, not in the URL"
	done
	run sql "SELECT name FROM endpoints"
	assert_output pub
	run whk-endpoint show pub --show-secret
	assert_output "$before"
	# The operator's word lets each of them in.
	k=0
	while read -r url; do
		k=$((k + 1))
		run --separate-stderr whk-endpoint add "p$k" "$url" --allow-private
		assert_success
		assert_equal "$(jq -c '[.url, .allow_private]' <<<"$output")" "[\"$url\",true]"
	done <urls
	[ "$k" -eq 27 ]
}

@test "SSRF at connect time: URLs put in the store behind whk-endpoint's back, in every spelling, are refused by the address connected to: a failed attempt with the reason, nothing sent; --allow-private then delivers them" {
	receiver_start
	port=${RECEIVER##*:}
	# The host, then the address whk-deliver names: each reaches the
	# receiver (127.0.0.1) when allowed.
	n=0
	while read -r host addr; do
		n=$((n + 1))
		outside "e$n"
		behind "e$n" "http://$host:$port/ok"
		printf 'e%d\t%s\n' "$n" "$(refused "$addr")" >>want
	done <<-'EOF'
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
	# These are never reached (no receiver there): the refusal comes
	# before any connect, which would have failed otherwise.
	while read -r host addr; do
		n=$((n + 1))
		outside "e$n"
		behind "e$n" "http://$host:$port/ok"
		printf 'e%d\t%s\n' "$n" "$(refused "$addr")" >>want
	done <<-'EOF'
	10.0.0.1 10.0.0.1
	169.254.169.254 169.254.169.254
	[::ffff:169.254.169.254] ::ffff:169.254.169.254
	[64:ff9b::a9fe:a9fe] 64:ff9b::a9fe:a9fe
	192.168.0.1 192.168.0.1
	EOF
	for i in $(seq "$n"); do
		hooks "e$i" 1
	done >recs
	run --separate-stderr whk-deliver <recs
	assert_failure 1
	assert_equal "$(jq -c '[.outcome, .status]' <<<"$output" | sort -u)" '["failed",null]'
	run errors_of
	assert_output "$(sort want)"
	assert_equal "$(received | wc -l)" 0
	# Each is in the history as a failed attempt with its reason.
	for i in $(seq "$n"); do
		run attempts_of "e$i"
		assert_output "1||failed|$(sed -n "${i}p" want | cut -f2)"
	done
	# The operator allows it: the same endpoints, the same webhooks, now
	# delivered, each to the receiver.
	for i in $(seq "$reach"); do
		whk-endpoint set "e$i" --allow-private >/dev/null
	done
	head -n "$reach" recs | jq -r .webhook | sort >ids
	run --separate-stderr eval 'whk-retry --now $(cat ids) | whk-deliver'
	assert_success
	assert_equal "$(jq -r 'select(.outcome == "delivered") | .webhook' <<<"$output" | sort)" "$(cat ids)"
	assert_equal "$(received | jq -r .id | sort)" "$(cat ids)"
}

@test "SSRF at connect time, IPv6: [::1] and its spellings are refused, nothing sent; --allow-private delivers" {
	receiver_start --bind ::1 2>/dev/null || skip "no IPv6 loopback here"
	port=${RECEIVER##*:}
	n=0
	while read -r host addr; do
		n=$((n + 1))
		outside "e$n"
		behind "e$n" "http://$host:$port/ok"
		printf 'e%d\t%s\n' "$n" "$(refused "$addr")" >>want
	done <<-'EOF'
	[::1] ::1
	[0:0:0:0:0:0:0:1] ::1
	[::0.0.0.1] ::1
	[::1%25lo] ::1
	[::] ::
	EOF
	for i in $(seq "$n"); do
		hooks "e$i" 1
	done >recs
	run --separate-stderr whk-deliver <recs
	assert_failure 1
	run errors_of
	assert_output "$(sort want)"
	assert_equal "$(received | wc -l)" 0
	for i in $(seq "$n"); do
		whk-endpoint set "e$i" --allow-private >/dev/null
	done
	jq -r .webhook recs | sort >ids
	run --separate-stderr eval 'whk-retry --now $(cat ids) | whk-deliver'
	assert_success
	assert_equal "$(received | jq -r .id | sort)" "$(cat ids)"
}

@test "SSRF by name: names that resolve to loopback are refused at connect time, whatever their case or a trailing dot; --allow-private delivers them" {
	receiver_start
	port=${RECEIVER##*:}
	# localhost is refused at add already; in the store, at connect.
	names=(localhost LocalHost)
	# The machine's own name, where it resolves to loopback, passes add:
	# a name is judged by what it resolves to when a request connects.
	host=$(hostname)
	case $(getent ahosts "$host" | awk '{ print $1; exit }') in
	127.* | ::1)
		run --separate-stderr whk-endpoint add named "http://$host:$port/ok" \
		    --tenant named
		assert_success
		assert_equal "$(jq .allow_private <<<"$output")" false
		names+=("$host")
		;;
	*)
		echo "# '$host' does not resolve to loopback here: only localhost is tried" >&3
		;;
	esac
	n=0
	for name in "${names[@]}"; do
		[ "$name" = "$host" ] && e=named || {
			n=$((n + 1))
			e=e$n
			outside "$e"
			behind "$e" "http://$name:$port/ok"
		}
		hooks "$e" 1 >>recs
	done
	run --separate-stderr whk-deliver <recs
	assert_failure 1
	[ "${#lines[@]}" -eq "${#names[@]}" ]
	for l in "${lines[@]}"; do
		refused_loopback "$(jq -r .error <<<"$l")"
	done
	assert_equal "$(received | wc -l)" 0
	# A trailing dot makes no other name of them: never sent either.
	for name in 127.0.0.1. localhost.; do
		n=$((n + 1))
		outside "e$n"
		behind "e$n" "http://$name:$port/ok"
		run --separate-stderr eval "hooks e$n 1 | whk-deliver"
		assert_failure 1
		e=$(jq -r .error <<<"$output")
		[ "$e" = "Could not resolve host: $name" ] || refused_loopback "$e"
	done
	assert_equal "$(received | wc -l)" 0
	# Allowed, the names of the first run are delivered.
	for e in $(jq -r .endpoint recs); do
		whk-endpoint set "$e" --allow-private >/dev/null
	done
	run --separate-stderr eval 'whk-retry --now $(jq -r .webhook recs) | whk-deliver'
	assert_success
	assert_equal "$(received | jq -r .id | sort)" "$(jq -r .webhook recs | sort)"
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
	assert_output "1||failed|$(refused 127.0.0.1)"
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
