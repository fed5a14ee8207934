#!/usr/bin/env bats
# whk-endpoint: who receives what.  Adding, changing, listing, disabling,
# rotating and removing endpoints; every value checked when given.

load helpers

bats_require_minimum_version 1.5.0

NOW=2026-01-01T00:00:00Z

# ep ARGS...: run whk-endpoint; stdout in $output, stderr in $stderr.
ep() {
	run --separate-stderr whk-endpoint "$@"
}

# fields NAME JQ: the endpoint's record (as show prints it), through jq -c.
fields() {
	whk-endpoint show "$1" | jq -c "$2"
}

stderr_is() {
	assert_equal "$stderr" "$1"
}

stderr_has() {
	case $stderr in
	*"$1"*) ;;
	*) fail "stderr does not hold '$1': $stderr" ;;
	esac
}

stderr_lacks() {
	case $stderr in
	*"$1"*) fail "stderr holds '$1': $stderr" ;;
	esac
}

# secret_of N: "whsec_" and the base64 of N random bytes.
secret_of() {
	printf 'whsec_%s' "$(head -c "$1" /dev/urandom | base64 -w0)"
}

teardown() {
	if [ -n "${PUBDIR:-}" ]; then
		rm -rf "$PUBDIR"
	fi
}

# --- add ------------------------------------------------------------------

@test "add with defaults prints the whole record, redacted, after commit" {
	export WHK_NOW=$NOW
	ep add acme https://example.com/x
	assert_success
	assert_output '{"endpoint":"acme","url":"https://example.com/x","secret":"whsec_********","rotation_until":null,"state":"enabled","disabled_reason":null,"disabled_at":null,"tenant":null,"types":null,"filter":null,"group_by":null,"template":null,"batch":1,"batch_bytes":262144,"window_ms":0,"timeout_ms":15000,"concurrency":8,"rate":0,"schedule":null,"headers":[],"allow_private":false,"created_at":"2026-01-01T00:00:00.000Z","updated_at":"2026-01-01T00:00:00.000Z"}'
	stderr_is ""
	added=$output
	ep show acme
	assert_success
	assert_output "$added"
	run sql "select name, url, batch, batch_bytes, window_ms, timeout_ms, concurrency, allow_private, disabled_at is null from endpoints"
	assert_output "acme|https://example.com/x|1|262144|0|15000|8|0|1"
}

@test "a generated secret is whsec_ and the base64 of 32 random bytes, shown only with --show-secret" {
	whk-endpoint add a https://example.com/a >/dev/null
	whk-endpoint add b https://example.com/b >/dev/null
	s=$(sql "select secret from endpoints where name = 'a'")
	t=$(sql "select secret from endpoints where name = 'b'")
	[[ $s == whsec_* ]]
	run sh -c "printf %s '${s#whsec_}' | base64 -d | wc -c"
	assert_output 32
	assert_not_equal "$s" "$t"
	run fields a .secret
	assert_output '"whsec_********"'
	run whk-endpoint list
	assert_success
	refute_output --partial "${s#whsec_}"
	refute_output --partial "${t#whsec_}"
	run sh -c "whk-endpoint list | jq -c .secret"
	assert_output $'"whsec_********"\n"whsec_********"'
	run sh -c "whk-endpoint show a --show-secret | jq -r .secret"
	assert_output "$s"
	run sh -c "whk-endpoint list --show-secret | jq -r .secret"
	assert_output "$s"$'\n'"$t"
}

@test "header values are redacted unless --show-secret" {
	ep add a https://example.com/ --header 'Authorization: Bearer tok123' --header 'X-Env: prod'
	assert_success
	refute_output --partial tok123
	run sh -c "whk-endpoint add b https://example.com/ --header 'X-Key: k9' | jq -c .headers"
	assert_output '["X-Key: ********"]'
	run fields a .headers
	assert_output '["Authorization: ********","X-Env: ********"]'
	run whk-endpoint list
	refute_output --partial tok123
	refute_output --partial prod
	run sh -c "whk-endpoint show a --show-secret | jq -c .headers"
	assert_output '["Authorization: Bearer tok123","X-Env: prod"]'
	run sh -c "whk-endpoint list --show-secret | jq -c .headers"
	assert_output $'["Authorization: Bearer tok123","X-Env: prod"]\n["X-Key: k9"]'
}

@test "add sets every option at once" {
	ep add full https://example.com/hook --secret whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY= \
	    --tenant acme --types 'order.*,invoice.paid' --filter '.data.amount > 10' \
	    --group-by '.data.order' --batch 50 --batch-bytes 1M --window 2s \
	    --timeout 30s --concurrency 2 --header 'X-A: 1' --allow-private
	assert_success
	run sh -c "whk-endpoint show full --show-secret | jq -c '[.secret,.tenant,.types,.filter,.group_by,.batch,.batch_bytes,.window_ms,.timeout_ms,.concurrency,.headers,.allow_private]'"
	assert_output '["whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=","acme",["order.*","invoice.paid"],".data.amount > 10",".data.order",50,1048576,2000,30000,2,["X-A: 1"],true]'
}

@test "add an existing name: exit 1 and the first is unchanged" {
	whk-endpoint add acme https://example.com/one --tenant t1 >/dev/null
	before=$(whk-endpoint show acme --show-secret)
	ep add acme https://example.com/two --tenant t2 --batch 5
	assert_failure 1
	assert_output ""
	stderr_is "whk-endpoint: endpoint 'acme' already exists"
	run whk-endpoint show acme --show-secret
	assert_output "$before"
	run sql "select count(*) from endpoints"
	assert_output 1
}

@test "invalid names are refused with exit 2, a 64-character one is accepted" {
	whk-endpoint list >/dev/null
	long64=$(printf 'a%.0s' $(seq 64))
	long65=${long64}b
	for name in 'a b' "$long65" '.x' 'a/b' 'a;b' "a'b" '$(touch pwned)' 'é'; do
		ep add "$name" https://example.com/
		assert_failure 2
		stderr_is "whk-endpoint: invalid endpoint name '$name' (letters, digits, '.', '_' and '-', at most 64)"
	done
	ep add -- -x https://example.com/
	assert_failure 2
	stderr_has "invalid endpoint name '-x'"
	ep add -x https://example.com/
	assert_failure 2
	stderr_has "usage: whk-endpoint"
	ep add '' https://example.com/
	assert_failure 2
	[ ! -e pwned ]
	run sql "select count(*) from endpoints"
	assert_output 0
	ep add "$long64" https://example.com/
	assert_success
	run fields "$long64" .endpoint
	assert_output "\"$long64\""
}

# --- secrets --------------------------------------------------------------

@test "--secret: a valid one is stored as given, on add and set" {
	s1=$(secret_of 32)
	s2=$(secret_of 48)
	whk-endpoint add a https://example.com/ --secret "$s1" >/dev/null
	run sql "select secret from endpoints"
	assert_output "$s1"
	ep set a --secret "$s2"
	assert_success
	run sql "select secret from endpoints"
	assert_output "$s2"
	run sh -c "whk-endpoint show a | jq -r .secret"
	assert_output "whsec_********"
}

@test "--secret: 24 to 64 bytes are accepted whatever the padding" {
	for n in 24 25 26 30 33 63 64; do
		s=$(secret_of "$n")
		ep add "e$n" https://example.com/ --secret "$s"
		assert_success
		run sql "select secret from endpoints where name = 'e$n'"
		assert_output "$s"
	done
}

@test "--secret: wrong prefix, not base64, too short or too long: exit 2, nothing stored" {
	whk-endpoint list >/dev/null
	good=$(secret_of 32)
	ep add a https://example.com/ --secret "sk_${good#whsec_}"
	assert_failure 2
	stderr_is "whk-endpoint: --secret: secret must start with 'whsec_'"
	ep add a https://example.com/ --secret 'whsec_not base64!!'
	assert_failure 2
	stderr_is "whk-endpoint: --secret: secret must be 'whsec_' and base64"
	ep add a https://example.com/ --secret "${good%?}"
	assert_failure 2
	stderr_is "whk-endpoint: --secret: secret must be 'whsec_' and base64"
	ep add a https://example.com/ --secret whsec_
	assert_failure 2
	ep add a https://example.com/ --secret "$(secret_of 23)"
	assert_failure 2
	stderr_is "whk-endpoint: --secret: secret must hold 24 to 64 bytes, not 23"
	ep add a https://example.com/ --secret "$(secret_of 65)"
	assert_failure 2
	stderr_is "whk-endpoint: --secret: secret must hold 24 to 64 bytes, not 65"
	run sql "select count(*) from endpoints"
	assert_output 0
	# On set, the stored secret stays.
	whk-endpoint add a https://example.com/ --secret "$good" >/dev/null
	ep set a --secret "$(secret_of 16)"
	assert_failure 2
	run sql "select secret from endpoints"
	assert_output "$good"
}

@test "--secret-file: the secret from a file or stdin, never on the command line" {
	s1=$(secret_of 32)
	s2=$(secret_of 40)
	s3=$(secret_of 24)
	printf '%s\n' "$s1" >key
	ep add a https://example.com/ --secret-file key
	assert_success
	run sql "select secret from endpoints"
	assert_output "$s1"
	# From a pipe, with or without a line end, and CRLF as an editor writes it.
	printf '%s' "$s2" | whk-endpoint set a --secret-file - >/dev/null
	run sql "select secret from endpoints"
	assert_output "$s2"
	printf '%s\r\n' "$s3" | whk-endpoint rotate-secret a --secret-file - >/dev/null
	run sql "select secret, old_secret from endpoints"
	assert_output "$s3|$s2"
	# Nothing of it is printed.
	ep set a --secret-file key
	assert_success
	assert_equal "$(jq -r .secret <<<"$output")" "whsec_********"
	stderr_is ""
}

@test "--secret-file: missing, empty, two lines, a NUL, invalid, or with --secret: refused, nothing changed" {
	good=$(secret_of 32)
	whk-endpoint add a https://example.com/ --secret "$good" >/dev/null
	ep set a --secret-file nothere
	assert_failure 4
	stderr_is "whk-endpoint: --secret-file: cannot open 'nothere': No such file or directory"
	: >empty
	ep set a --secret-file empty
	assert_failure 2
	stderr_is "whk-endpoint: --secret-file: 'empty' must hold one line, the secret"
	printf '%s\n%s\n' "$(secret_of 32)" "$(secret_of 32)" >two
	ep set a --secret-file two
	assert_failure 2
	stderr_is "whk-endpoint: --secret-file: 'two' must hold one line, the secret"
	printf '%s\n\n' "$(secret_of 32)" >blank
	ep set a --secret-file blank
	assert_failure 2
	stderr_is "whk-endpoint: --secret-file: 'blank' must hold one line, the secret"
	printf '%s\0x\n' "$(secret_of 32)" >nul
	ep set a --secret-file nul
	assert_failure 2
	stderr_is "whk-endpoint: --secret-file: 'nul' must hold one line, the secret"
	printf 'whsec_c2hvcnQ=\n' >short
	ep rotate-secret a --secret-file short
	assert_failure 2
	stderr_is "whk-endpoint: --secret-file: secret must hold 24 to 64 bytes, not 5"
	printf '%s\n' "$(secret_of 32)" >key
	ep set a --secret-file key --secret "$(secret_of 32)"
	assert_failure 2
	stderr_is "whk-endpoint: --secret and --secret-file: give one or the other"
	ep add b https://example.com/ --secret-file - </dev/null
	assert_failure 2
	stderr_is "whk-endpoint: --secret-file: '-' must hold one line, the secret"
	# Only where a secret is taken; stdin is not read otherwise.
	ep list --secret-file key
	assert_failure 2
	stderr_is "whk-endpoint: list: takes no endpoint options"
	run sql "select secret, old_secret is null, (select count(*) from endpoints) from endpoints"
	assert_output "$good|1|1"
}

# --- options of add and set ---------------------------------------------

@test "--tenant and --types: set, changed, and cleared with ''" {
	whk-endpoint add a https://example.com/ --tenant acme --types 'order.*' >/dev/null
	run fields a '[.tenant,.types]'
	assert_output '["acme",["order.*"]]'
	whk-endpoint set a --tenant globex --types 'a.b,c.*,d.[xy]' >/dev/null
	run fields a '[.tenant,.types]'
	assert_output '["globex",["a.b","c.*","d.[xy]"]]'
	ep set a --tenant '' --types ''
	assert_success
	run fields a '[.tenant,.types]'
	assert_output '[null,null]'
	run sql "select tenant is null, types is null from endpoints"
	assert_output "1|1"
}

@test "--types: an empty or blank element is refused with exit 2" {
	whk-endpoint add a https://example.com/ --types x.y >/dev/null
	ep set a --types 'a,,b'
	assert_failure 2
	stderr_is "whk-endpoint: --types: empty type in list 'a,,b'"
	ep set a --types 'a,'
	assert_failure 2
	stderr_is "whk-endpoint: --types: empty type in list 'a,'"
	ep set a --types ',a'
	assert_failure 2
	ep set a --types 'a, b'
	assert_failure 2
	stderr_has "--types: blank or control character"
	ep add b https://example.com/ --types 'a,,b'
	assert_failure 2
	run fields a .types
	assert_output '["x.y"]'
	run sql "select count(*) from endpoints"
	assert_output 1
}

@test "--filter and --group-by: valid jq kept, a syntax error names the option" {
	whk-endpoint add a https://example.com/ --filter '.type == "x"' --group-by '.tenant' >/dev/null
	run fields a '[.filter,.group_by]'
	assert_output '[".type == \"x\"",".tenant"]'
	ep set a --filter '.a =='
	assert_failure 2
	assert_output ""
	stderr_has "whk-endpoint: --filter: invalid jq expression '.a ==': "
	ep set a --group-by '.a['
	assert_failure 2
	stderr_has "whk-endpoint: --group-by: invalid jq expression '.a[': "
	ep add b https://example.com/ --filter 'if'
	assert_failure 2
	stderr_has "whk-endpoint: --filter: invalid jq expression 'if'"
	run fields a '[.filter,.group_by]'
	assert_output '[".type == \"x\"",".tenant"]'
	ep set a --filter '' --group-by ''
	assert_success
	run fields a '[.filter,.group_by]'
	assert_output '[null,null]'
}

@test "--batch and --batch-bytes: sizes with K and M suffixes, ranges" {
	whk-endpoint add a https://example.com/ >/dev/null
	for v in 1K:1024 1M:1048576 64M:67108864 1:1 300:300 2k:2048; do
		ep set a --batch-bytes "${v%%:*}"
		assert_success
		run fields a .batch_bytes
		assert_output "${v#*:}"
	done
	for v in 1 10000 7; do
		ep set a --batch "$v"
		assert_success
	done
	for v in 0 65M 1G 1X -1 '' abc; do
		ep set a --batch-bytes "$v"
		assert_failure 2
		stderr_has "whk-endpoint: --batch-bytes: "
	done
	ep set a --batch-bytes 0
	stderr_is "whk-endpoint: --batch-bytes: '0' is not between 1 and 64M"
	for v in 0 10001 -1 1.5 abc 2x ''; do
		ep set a --batch "$v"
		assert_failure 2
		stderr_is "whk-endpoint: --batch: invalid number '$v' (expected 1 to 10000)"
	done
	run fields a '[.batch,.batch_bytes]'
	assert_output '[7,2048]'
}

@test "--window and --timeout: durations, bad forms and ranges refused" {
	whk-endpoint add a https://example.com/ >/dev/null
	for v in 0s:0 500ms:500 2s:2000 10m:600000 1h30m:5400000 1d:86400000; do
		ep set a --window "${v%%:*}"
		assert_success
		run fields a .window_ms
		assert_output "${v#*:}"
	done
	for v in 100ms:100 30s:30000 10m:600000; do
		ep set a --timeout "${v%%:*}"
		assert_success
		run fields a .timeout_ms
		assert_output "${v#*:}"
	done
	for v in 5 5x '' 1.5s -1s s; do
		ep set a --window "$v"
		assert_failure 2
		stderr_is "whk-endpoint: --window: invalid duration '$v' (use 500ms, 5s, 10m, 2h, 7d)"
	done
	ep set a --window 1d1ms
	assert_failure 2
	stderr_is "whk-endpoint: --window: '1d1ms' is not between 0s and 1d"
	ep set a --timeout 99ms
	assert_failure 2
	stderr_is "whk-endpoint: --timeout: '99ms' is not between 100ms and 10m"
	ep set a --timeout 11m
	assert_failure 2
	ep set a --timeout 0s
	assert_failure 2
	ep set a --timeout 5
	assert_failure 2
	stderr_has "invalid duration '5'"
	run fields a '[.window_ms,.timeout_ms]'
	assert_output '[86400000,600000]'
}

@test "--concurrency: 1 to 1000" {
	whk-endpoint add a https://example.com/ --concurrency 1 >/dev/null
	run fields a .concurrency
	assert_output 1
	ep set a --concurrency 1000
	assert_success
	run fields a .concurrency
	assert_output 1000
	for v in 0 1001 -3 x; do
		ep set a --concurrency "$v"
		assert_failure 2
		stderr_is "whk-endpoint: --concurrency: invalid number '$v' (expected 1 to 1000)"
	done
	run fields a .concurrency
	assert_output 1000
}

@test "--header: repeatable, replaced by name, removed with 'K:'" {
	whk-endpoint add a https://example.com/ --header 'X-A: 1' --header 'X-B:2' --header 'X-C: three and more' >/dev/null
	run sh -c "whk-endpoint show a --show-secret | jq -c .headers"
	assert_output '["X-A: 1","X-B: 2","X-C: three and more"]'
	ep set a --header 'x-a: one' --header 'X-D: 4'
	assert_success
	run sh -c "whk-endpoint show a --show-secret | jq -c .headers"
	assert_output '["X-B: 2","X-C: three and more","x-a: one","X-D: 4"]'
	ep set a --header 'X-B:' --header 'x-c:  '
	assert_success
	run sh -c "whk-endpoint show a --show-secret | jq -c .headers"
	assert_output '["x-a: one","X-D: 4"]'
	# Removing one that is not there changes nothing.
	ep set a --header 'X-Nope:'
	assert_success
	run sql "select headers from endpoints"
	assert_output $'x-a: one\nX-D: 4'
	ep set a --header 'X-A:' --header 'X-D:'
	assert_success
	run fields a .headers
	assert_output '[]'
	run sql "select headers is null from endpoints"
	assert_output 1
}

@test "--header: reserved names, line breaks and bad syntax are refused" {
	whk-endpoint add a https://example.com/ --header 'X-Keep: 1' >/dev/null
	for h in 'webhook-signature: v1,abc' 'Webhook-Id: x' 'webhook-timestamp: 1' \
	    'Content-Type: text/plain' 'content-length: 3' 'Host: evil.example' \
	    'Transfer-Encoding: chunked' 'Connection: close'; do
		ep set a --header "$h"
		assert_failure 2
		stderr_is "whk-endpoint: --header: header '${h%%:*}' is set by whk itself"
	done
	ep set a --header $'X-A: 1\r\nX-Injected: 2'
	assert_failure 2
	stderr_has "whk-endpoint: --header: "
	stderr_has "'X-A'"
	ep set a --header $'X-A: 1\nX-Injected: 2'
	assert_failure 2
	ep set a --header $'X-A: \r'
	assert_failure 2
	ep set a --header 'no colon here'
	assert_failure 2
	stderr_has "(use 'Name: value')"
	ep set a --header ': empty name'
	assert_failure 2
	ep set a --header 'Bad Name: v'
	assert_failure 2
	stderr_has "whk-endpoint: --header: invalid header name"
	ep add b https://example.com/ --header 'Host: evil.example'
	assert_failure 2
	run sql "select count(*), group_concat(headers) from endpoints"
	assert_output "1|X-Keep: 1"
}

@test "--url on set; add takes the URL as an argument only" {
	whk-endpoint add a https://example.com/old >/dev/null
	ep set a --url https://example.org/new?x=1
	assert_success
	run fields a .url
	assert_output '"https://example.org/new?x=1"'
	ep set a --url ftp://example.org/
	assert_failure 2
	ep set a --url ''
	assert_failure 2
	run fields a .url
	assert_output '"https://example.org/new?x=1"'
	ep add b https://example.com/ --url https://example.org/
	assert_failure 2
	stderr_is "whk-endpoint: add: the URL is an argument, not --url"
}

@test "a later set changes updated_at only; created_at stays" {
	WHK_NOW=$NOW whk-endpoint add a https://example.com/ >/dev/null
	WHK_NOW=2026-01-01T10:00:00.250Z run --separate-stderr whk-endpoint set a --batch 3
	assert_success
	run fields a '[.created_at,.updated_at,.batch]'
	assert_output '["2026-01-01T00:00:00.000Z","2026-01-01T10:00:00.250Z",3]'
}

@test "text that is not UTF-8 is refused (the output is JSON)" {
	whk-endpoint add a https://example.com/ >/dev/null
	ep set a --tenant $'\xff\xfe'
	assert_failure 2
	stderr_is "whk-endpoint: --tenant: invalid UTF-8 at byte 1"
	ep set a --types $'a.\xc3'
	assert_failure 2
	ep set a --header $'X-A: \xe9t\xe9'
	assert_failure 2
	ep disable a --reason $'caf\xe9'
	assert_failure 2
	ep set a --tenant 'café ☕'
	assert_success
	run sh -c "whk-endpoint list | jq -r .tenant"
	assert_output 'café ☕'
}

# --- URLs -----------------------------------------------------------------

@test "private, loopback and link-local hosts are refused without --allow-private" {
	whk-endpoint list >/dev/null
	for u in http://127.0.0.1/ http://10.0.0.1/ http://172.16.0.1/ \
	    http://172.31.255.255/ http://192.168.1.1/ http://169.254.169.254/latest \
	    http://100.64.0.1/ http://0.0.0.0/ 'http://[::1]/' 'http://[fe80::1]/' \
	    'http://[fc00::1]/' 'http://[fd12::1]:8080/' 'http://[::ffff:127.0.0.1]/' \
	    'http://[::ffff:10.1.2.3]/' http://localhost/ https://localhost:8443/x \
	    http://foo.localhost/ http://LOCALHOST./ http://127.0.0.1:9/; do
		ep add p "$u"
		assert_failure 2
		assert_output ""
		stderr_has "whk-endpoint: refusing '$u': "
		stderr_has "is a private, loopback or link-local address (use --allow-private to permit it)"
	done
	run sql "select count(*) from endpoints"
	assert_output 0
}

@test "numeric forms curl normalises are judged by the address curl connects to" {
	whk-endpoint list >/dev/null
	for u in http://2130706433/ http://0x7f.1/ http://127.1/ http://017700000001/ \
	    http://0x7f000001/; do
		ep add p "$u"
		assert_failure 2
		stderr_is "whk-endpoint: refusing '$u': '127.0.0.1' is a private, loopback or link-local address (use --allow-private to permit it)"
	done
	ep add p http://167772161/
	assert_failure 2
	stderr_has "'10.0.0.1' is a private"
	run sql "select count(*) from endpoints"
	assert_output 0
}

@test "public hosts and literals are accepted" {
	k=0
	for u in https://example.com/x http://93.184.216.34/ https://8.8.8.8:8443/hook \
	    'http://[2606:2800:220:1:248:1893:25c8:1946]/' https://hooks.example.com/a?b=c#d \
	    http://172.32.0.1/ http://100.128.0.1/; do
		k=$((k + 1))
		ep add "e$k" "$u"
		assert_success
		run fields "e$k" '[.url,.allow_private]'
		assert_output "[\"$u\",false]"
	done
}

@test "with --allow-private every private host is accepted" {
	k=0
	for u in http://127.0.0.1/ http://10.0.0.1/ http://172.16.0.1/ \
	    http://192.168.1.1/ http://169.254.169.254/ http://100.64.0.1/ \
	    http://0.0.0.0/ 'http://[::1]/' 'http://[fe80::1]/' 'http://[fc00::1]/' \
	    'http://[::ffff:127.0.0.1]/' http://2130706433/ http://localhost:8080/ \
	    http://foo.localhost/; do
		k=$((k + 1))
		ep add "p$k" "$u" --allow-private
		assert_success
	done
	run sh -c "whk-endpoint list | jq -c .allow_private | sort | uniq -c | tr -s ' '"
	assert_output " 14 true"
}

@test "only http and https, with a host and no credentials" {
	whk-endpoint list >/dev/null
	for u in ftp://example.com/ file:///etc/passwd gopher://example.com/ \
	    ws://example.com/ 'javascript:alert(1)' example.com/x '' 'http://'; do
		ep add a "$u"
		assert_failure 2
		stderr_has "whk-endpoint: invalid URL '$u'"
	done
	ep add a ftp://example.com/
	stderr_is "whk-endpoint: invalid URL 'ftp://example.com/': only http and https are allowed"
	ep add a 'http://user:pa55word@example.com/'
	assert_failure 2
	stderr_is "whk-endpoint: invalid URL 'http://********@example.com/': credentials belong in --header, not in the URL"
	ep add a 'https://token@example.com/'
	assert_failure 2
	stderr_has "credentials belong in --header"
	stderr_lacks token
	ep add a 'http://u:p@127.0.0.1/' --allow-private
	assert_failure 2
	run sql "select count(*) from endpoints"
	assert_output 0
}

@test "set --no-allow-private on a private URL: exit 2 and nothing changed" {
	whk-endpoint add a http://10.0.0.5/hook --allow-private >/dev/null
	before=$(whk-endpoint show a --show-secret)
	ep set a --no-allow-private
	assert_failure 2
	stderr_has "refusing 'http://10.0.0.5/hook'"
	ep set a --no-allow-private --batch 9 --tenant t
	assert_failure 2
	run whk-endpoint show a --show-secret
	assert_output "$before"
	# Moving it to a public host and refusing private ones together works.
	ep set a --no-allow-private --url https://example.com/hook
	assert_success
	run fields a '[.url,.allow_private]'
	assert_output '["https://example.com/hook",false]'
	# And a private URL is refused again.
	ep set a --url http://192.168.0.1/
	assert_failure 2
	ep set a --url http://192.168.0.1/ --allow-private
	assert_success
	run fields a '[.url,.allow_private]'
	assert_output '["http://192.168.0.1/",true]'
}

# --- list and show --------------------------------------------------------

# like_schedule_error STDERR: one line naming --schedule.
like_schedule_error() {
	[[ "$1" == "whk-endpoint: --schedule: "* ]] || { echo "got: $1" >&2; return 1; }
	[ "$(printf '%s\n' "$1" | wc -l)" -eq 1 ]
}

@test "--schedule: set with durations and *N, shown, cleared with ''; a bad list changes nothing" {
	whk-endpoint add acme https://example.com/x --schedule '5s,1m,1d*3' >/dev/null
	run sh -c "whk-endpoint show acme | jq -r .schedule"
	assert_output '5s,1m,1d*3'
	run whk-endpoint set acme --schedule '10s'
	assert_success
	run sh -c "whk-endpoint show acme | jq -r .schedule"
	assert_output 10s
	for bad in '' ',' '5s,,1m' 'soon' '1d*0' '1d*x' '500ms' '31d' '1s*1001'; do
		[ -z "$bad" ] && continue
		run --separate-stderr whk-endpoint set acme --schedule "$bad"
		assert_failure 2
		like_schedule_error "$stderr"
	done
	run sh -c "whk-endpoint show acme | jq -r .schedule"
	assert_output 10s
	whk-endpoint set acme --schedule '' >/dev/null
	run sh -c "whk-endpoint show acme | jq .schedule"
	assert_output null
	run sql "SELECT schedule IS NULL FROM endpoints"
	assert_output 1
}

@test "list: NDJSON sorted by name; nothing when empty" {
	ep list
	assert_success
	assert_output ""
	for n in charlie alpha Bravo b-2 a.1; do
		whk-endpoint add "$n" "https://example.com/$n" >/dev/null
	done
	ep list
	assert_success
	assert_equal "${#lines[@]}" 5
	run sh -c "whk-endpoint list | jq -c '[.endpoint,.url]'"
	assert_output '["Bravo","https://example.com/Bravo"]
["a.1","https://example.com/a.1"]
["alpha","https://example.com/alpha"]
["b-2","https://example.com/b-2"]
["charlie","https://example.com/charlie"]'
	ep list --format json
	assert_success
	assert_equal "${#lines[@]}" 5
}

@test "list --format table: a header line and aligned rows" {
	ep list --format table
	assert_success
	assert_output "NAME  STATE     URL  TENANT  BATCH  TYPES"
	whk-endpoint add billing https://billing.example.com/hooks --tenant acme --types 'order.*,invoice.paid' --batch 50 >/dev/null
	whk-endpoint add a https://example.com/ >/dev/null
	whk-endpoint disable a >/dev/null
	ep list --format table
	assert_success
	assert_output "NAME     STATE     URL                                TENANT  BATCH  TYPES
a        disabled  https://example.com/               *           1  *
billing  enabled   https://billing.example.com/hooks  acme       50  order.*,invoice.paid"
	ep list --format bogus
	assert_failure 2
	assert_output ""
	stderr_is "whk-endpoint: --format: 'bogus' is not json or table"
	ep show a --format json
	assert_failure 2
	stderr_is "whk-endpoint: --format: only with list"
}

@test "show, set, disable, enable, rotate-secret, rm of an unknown endpoint: exit 1" {
	whk-endpoint add other https://example.com/ >/dev/null
	for cmd in show set disable enable rotate-secret rm; do
		ep "$cmd" x
		assert_failure 1
		assert_output ""
		stderr_is "whk-endpoint: no endpoint 'x'"
	done
	ep set x --batch 2
	assert_failure 1
	run sql "select count(*) from endpoints"
	assert_output 1
}

# --- disable, enable ------------------------------------------------------

@test "disable --reason and enable: state, disabled_reason, disabled_at" {
	WHK_NOW=$NOW whk-endpoint add a https://example.com/ >/dev/null
	WHK_NOW=2026-01-01T08:00:00Z run --separate-stderr whk-endpoint disable a --reason 'receiver 410 Gone'
	assert_success
	run jq -c '[.state,.disabled_reason,.disabled_at,.updated_at]' <<<"$output"
	assert_output '["disabled","receiver 410 Gone","2026-01-01T08:00:00.000Z","2026-01-01T08:00:00.000Z"]'
	run fields a '[.state,.disabled_reason,.disabled_at]'
	assert_output '["disabled","receiver 410 Gone","2026-01-01T08:00:00.000Z"]'
	# Disabling again keeps the first time but takes the new reason.
	WHK_NOW=2026-01-01T09:00:00Z whk-endpoint disable a --reason 'still gone' >/dev/null
	run fields a '[.state,.disabled_reason,.disabled_at]'
	assert_output '["disabled","still gone","2026-01-01T08:00:00.000Z"]'
	ep enable a
	assert_success
	run fields a '[.state,.disabled_reason,.disabled_at]'
	assert_output '["enabled",null,null]'
	run sql "select disabled_at is null, disabled_reason is null from endpoints"
	assert_output "1|1"
	# Without a reason.
	ep disable a
	assert_success
	run fields a '[.state,.disabled_reason]'
	assert_output '["disabled",null]'
}

@test "disable --reason: one line of at most 1024 bytes" {
	whk-endpoint add a https://example.com/ >/dev/null
	ep disable a --reason $'two\nlines'
	assert_failure 2
	stderr_is "whk-endpoint: --reason: one line of at most 1024 bytes"
	ep disable a --reason "$(printf 'r%.0s' $(seq 1025))"
	assert_failure 2
	run fields a .state
	assert_output '"enabled"'
	ep disable a --reason "$(printf 'r%.0s' $(seq 1024))"
	assert_success
	run fields a '.disabled_reason | length'
	assert_output 1024
}

# --- rotate-secret --------------------------------------------------------

@test "rotate-secret: a new secret, the old one valid for 24h, shown only with --show-secret" {
	export WHK_NOW=$NOW
	whk-endpoint add a https://example.com/ >/dev/null
	old=$(sql "select secret from endpoints")
	ep rotate-secret a
	assert_success
	run jq -c '[.secret,.rotation_until,has("old_secret")]' <<<"$output"
	assert_output '["whsec_********","2026-01-02T00:00:00.000Z",false]'
	refute_output --partial "${old#whsec_}"
	new=$(sql "select secret from endpoints")
	assert_not_equal "$new" "$old"
	[[ $new == whsec_* ]]
	run sh -c "printf %s '${new#whsec_}' | base64 -d | wc -c"
	assert_output 32
	run sql "select old_secret from endpoints"
	assert_output "$old"
	run sh -c "whk-endpoint show a --show-secret | jq -r '.secret, .old_secret, .rotation_until'"
	assert_output "$new"$'\n'"$old"$'\n'"2026-01-02T00:00:00.000Z"
	run sh -c "whk-endpoint list --show-secret | jq -r .old_secret"
	assert_output "$old"
	# Once the grace is over the old secret is neither used nor shown.
	WHK_NOW=2026-01-02T00:00:00.001Z run sh -c "whk-endpoint show a --show-secret | jq -c '[has(\"old_secret\"),.rotation_until]'"
	assert_output '[false,null]'
}

@test "rotate-secret --grace: 1h, 0 drops the old secret, bad values refused" {
	export WHK_NOW=$NOW
	whk-endpoint add a https://example.com/ >/dev/null
	ep rotate-secret a --grace 1h
	assert_success
	run fields a .rotation_until
	assert_output '"2026-01-01T01:00:00.000Z"'
	ep rotate-secret a --grace 30d
	assert_success
	run fields a .rotation_until
	assert_output '"2026-01-31T00:00:00.000Z"'
	before=$(sql "select secret from endpoints")
	ep rotate-secret a --grace 0s
	assert_success
	run jq -c '[.rotation_until,has("old_secret")]' <<<"$output"
	assert_output '[null,false]'
	run sql "select old_secret is null, old_secret_until is null, secret != '$before' from endpoints"
	assert_output "1|1|1"
	after=$(sql "select secret from endpoints")
	ep rotate-secret a --grace 31d
	assert_failure 2
	stderr_is "whk-endpoint: --grace: '31d' is not between 0s and 30d"
	ep rotate-secret a --grace 1
	assert_failure 2
	stderr_is "whk-endpoint: --grace: invalid duration '1' (use 500ms, 5s, 10m, 2h, 7d)"
	run sql "select secret from endpoints"
	assert_output "$after"
	ep set a --grace 1h
	assert_failure 2
	stderr_is "whk-endpoint: --grace: only with rotate-secret"
}

@test "rotate-secret --secret S sets S; an invalid S changes nothing" {
	export WHK_NOW=$NOW
	whk-endpoint add a https://example.com/ >/dev/null
	old=$(sql "select secret from endpoints")
	s=$(secret_of 32)
	ep rotate-secret a --secret "$s"
	assert_success
	run sql "select secret, old_secret from endpoints"
	assert_output "$s|$old"
	ep rotate-secret a --secret whsec_short
	assert_failure 2
	stderr_has "whk-endpoint: --secret: "
	run sql "select secret, old_secret from endpoints"
	assert_output "$s|$old"
	ep rotate-secret a --secret "$(secret_of 32)" --batch 2
	assert_failure 2
	stderr_is "whk-endpoint: rotate-secret: takes no endpoint options"
}

# --- rm -------------------------------------------------------------------

@test "rm without webhooks deletes the endpoint; the name can be added again" {
	whk-endpoint add a https://example.com/one >/dev/null
	whk-endpoint add b https://example.com/b >/dev/null
	ep rm a
	assert_success
	assert_output '{"endpoint":"a","removed":true,"history_kept":false}'
	run sql "select count(*) from endpoints where name = 'a'"
	assert_output 0
	run sh -c "whk-endpoint list | jq -r .endpoint"
	assert_output b
	ep show a
	assert_failure 1
	ep add a https://example.com/two
	assert_success
	run fields a .url
	assert_output '"https://example.com/two"'
	ep rm a --batch 2
	assert_failure 2
	stderr_is "whk-endpoint: rm: takes no endpoint options"
}

@test "rm of an endpoint with a webhook retires it; the name can be added again" {
	WHK_NOW=$NOW whk-endpoint add a https://example.com/one >/dev/null
	id=$(sql "select id from endpoints where name = 'a'")
	sql "INSERT INTO webhooks(id,endpoint_id,events,bytes,body,created_at,first_event_at) VALUES('msg_x',$id,1,2,'{}',0,0)"
	WHK_NOW=2026-01-01T12:00:00Z run --separate-stderr whk-endpoint rm a
	assert_success
	assert_output '{"endpoint":"a","removed":true,"history_kept":true}'
	# The row stays, for the history that names it.
	run sql "select name, removed_at, disabled_at, disabled_reason from endpoints where id = $id"
	assert_output "a|1767268800000|1767268800000|removed"
	ep list
	assert_success
	assert_output ""
	ep show a
	assert_failure 1
	stderr_is "whk-endpoint: no endpoint 'a'"
	ep set a --batch 2
	assert_failure 1
	ep add a https://example.com/two
	assert_success
	run sh -c "whk-endpoint list | jq -c '[.endpoint,.url,.state]'"
	assert_output '["a","https://example.com/two","enabled"]'
	run sql "select count(*), count(removed_at) from endpoints where name = 'a'"
	assert_output "2|1"
	run sql "select endpoint_id from webhooks"
	assert_output "$id"
	# Removing the new one (no webhooks) deletes it and leaves the old.
	ep rm a
	assert_output '{"endpoint":"a","removed":true,"history_kept":false}'
	run sql "select id from endpoints"
	assert_output "$id"
}

# --- usage ----------------------------------------------------------------

@test "no command, unknown command, wrong argument count: exit 2, usage on stderr" {
	ep
	assert_failure 2
	assert_output ""
	stderr_has "usage: whk-endpoint [-s store] add name url [options]"
	ep frob
	assert_failure 2
	stderr_is "whk-endpoint: unknown command 'frob' (add, set, list, show, disable, enable, rotate-secret, rm)"
	ep show
	assert_failure 2
	assert_output ""
	stderr_has "whk-endpoint: show: expected 1 argument"
	stderr_has "usage: whk-endpoint"
	for args in "show a b" "add a" "add a https://example.com/ extra" "list x" \
	    "rm" "enable a b" "rotate-secret" "set" "disable a b"; do
		ep $args
		assert_failure 2
		assert_output ""
		stderr_has "usage: whk-endpoint"
	done
	ep add a
	stderr_has "whk-endpoint: add: expected 2 arguments"
	ep list x
	stderr_has "whk-endpoint: list: expected 0 arguments"
	# Nothing was created by a usage error.
	[ ! -e whk.db ]
}

@test "options a command does not take: exit 2" {
	whk-endpoint add a https://example.com/ >/dev/null
	before=$(whk-endpoint show a --show-secret)
	ep disable a --batch 2
	assert_failure 2
	stderr_is "whk-endpoint: disable: takes no endpoint options"
	ep show a --reason y
	assert_failure 2
	stderr_is "whk-endpoint: --reason: only with disable"
	ep enable a --reason y
	assert_failure 2
	ep enable a --tenant t
	assert_failure 2
	ep list --allow-private
	assert_failure 2
	stderr_is "whk-endpoint: list: takes no endpoint options"
	ep show a --header 'X-A: 1'
	assert_failure 2
	ep rotate-secret a --tenant t
	assert_failure 2
	ep set a --bogus
	assert_failure 2
	stderr_has "unrecognized option '--bogus'"
	stderr_has "usage: whk-endpoint"
	ep set a --batch
	assert_failure 2
	stderr_has "usage: whk-endpoint"
	run whk-endpoint show a --show-secret
	assert_output "$before"
}

@test "a bad value is a usage error before the store is touched" {
	ep set nosuch --batch 0
	assert_failure 2
	ep add a http://10.0.0.1/
	assert_failure 2
	ep rotate-secret nosuch --grace forever
	assert_failure 2
	[ ! -e whk.db ]
}

@test "--help on stdout with exit 0; --version" {
	ep --help
	assert_success
	stderr_is ""
	assert_line --index 0 "usage: whk-endpoint [-s store] add name url [options]"
	assert_output --partial "--allow-private"
	assert_output --partial "Exit: 0 done, 1 no such endpoint or it already exists, 2 usage,"
	ep -h
	assert_success
	assert_line --index 0 "usage: whk-endpoint [-s store] add name url [options]"
	ep --version
	assert_success
	assert_output "whk-endpoint 0.1.0"
	stderr_is ""
	ep -V
	assert_output "whk-endpoint 0.1.0"
	[ ! -e whk.db ]
}

# --- the store ------------------------------------------------------------

@test "the store is created 0600 on first use, whatever the umask" {
	(umask 000; whk-endpoint list >/dev/null)
	run mode whk.db
	assert_output 600
	rm whk.db
	(umask 000; whk-endpoint add a https://example.com/ >/dev/null)
	run mode whk.db
	assert_output 600
	run sql "PRAGMA journal_mode"
	assert_output wal
}

@test "another user can neither read nor use the store" {
	PUBDIR=$(mktemp -d)
	chmod 755 "$PUBDIR"
	whk-endpoint -s "$PUBDIR/whk.db" add a https://example.com/ >/dev/null
	run as_nobody cat "$PUBDIR/whk.db"
	assert_failure
	run --separate-stderr as_nobody whk-endpoint -s "$PUBDIR/whk.db" list
	assert_failure 3
	stderr_has "whk-endpoint: cannot open '$PUBDIR/whk.db'"
}

@test "without WHK_STORE the store is \$XDG_DATA_HOME/whk/whk.db, else under HOME" {
	unset WHK_STORE
	export XDG_DATA_HOME="$BATS_TEST_TMPDIR/xdg"
	ep add a https://example.com/
	assert_success
	run mode xdg/whk/whk.db
	assert_output 600
	run mode xdg/whk
	assert_output 700
	run sqlite3 xdg/whk/whk.db "select name from endpoints"
	assert_output a
	unset XDG_DATA_HOME
	HOME="$BATS_TEST_TMPDIR/home" run --separate-stderr whk-endpoint add b https://example.com/
	assert_success
	run sqlite3 home/.local/share/whk/whk.db "select name from endpoints"
	assert_output b
	[ ! -e whk.db ]
}

@test "-s and --store override WHK_STORE" {
	ep -s other.db add a https://example.com/
	assert_success
	ep --store=third.db add b https://example.com/
	assert_success
	ep add c https://example.com/ --store fourth.db
	assert_success
	[ ! -e whk.db ]
	run sqlite3 other.db "select name from endpoints"
	assert_output a
	run sqlite3 third.db "select name from endpoints"
	assert_output b
	run sqlite3 fourth.db "select name from endpoints"
	assert_output c
	run mode other.db
	assert_output 600
}

@test "a file that is not a database, or another SQLite database: exit 3" {
	echo 'not a database at all, just some text that is long enough' >notdb
	ep -s notdb list
	assert_failure 3
	assert_output ""
	stderr_is "whk-endpoint: cannot open 'notdb': file is not a database"
	run cat notdb
	assert_output 'not a database at all, just some text that is long enough'
	sqlite3 other.db "CREATE TABLE t(x); INSERT INTO t VALUES(42)"
	ep -s other.db add a https://example.com/
	assert_failure 3
	stderr_is "whk-endpoint: cannot open 'other.db': not a whk store"
	run sqlite3 other.db "select name from sqlite_master; select x from t; PRAGMA user_version"
	assert_output $'t\n42\n0'
	ep -s "$BATS_TEST_TMPDIR/no/such/dir/x.db" list
	assert_failure 3
	stderr_has "cannot open"
}

# --- security -------------------------------------------------------------

@test "SQL and shell metacharacters in values are stored literally and harmless" {
	evil="'; DROP TABLE endpoints; --"
	shell='$(touch pwned) `touch pwned2` ; touch pwned3 | "\'
	glob='$(touch${IFS}pwned6);`touch${IFS}pwned7`|&>x"\'
	whk-endpoint add a https://example.com/ --tenant "$evil" --types "$glob" \
	    --header "X-Evil: $evil" --header "X-Shell: $shell" >/dev/null
	whk-endpoint disable a --reason "$shell $evil" >/dev/null
	whk-endpoint add b "https://example.com/?q='--;\$(touch\${IFS}pwned4)" --tenant "$shell" >/dev/null
	run sh -c "whk-endpoint show a --show-secret | jq -r '.tenant, .types[0], .headers[0], .headers[1], .disabled_reason'"
	assert_output "$evil"$'\n'"$glob"$'\n'"X-Evil: $evil"$'\n'"X-Shell: $shell"$'\n'"$shell $evil"
	run sh -c "whk-endpoint show b | jq -r '.url, .tenant'"
	assert_output "https://example.com/?q='--;\$(touch\${IFS}pwned4)"$'\n'"$shell"
	run sql "select tenant from endpoints where name = 'a'"
	assert_output "$evil"
	run sql "select count(*) from endpoints"
	assert_output 2
	whk-endpoint list --format table >/dev/null
	ep show "$evil"
	assert_failure 2
	ep rm '$(touch pwned5)'
	assert_failure 2
	run sql "select count(*) from sqlite_master where name = 'endpoints'"
	assert_output 1
	run ls
	refute_output --partial pwned
}

@test "a secret never appears on stderr of a failing command" {
	whk-endpoint add a https://example.com/ >/dev/null
	s=$(sql "select secret from endpoints")
	b=${s#whsec_}
	fail_quietly() {
		ep "$@"
		assert_failure
		stderr_lacks "$b"
		stderr_lacks "${b:0:16}"
	}
	fail_quietly show nosuch --show-secret
	fail_quietly add a https://example.com/ --secret "$s" --show-secret
	fail_quietly add 'bad name' https://example.com/ --secret "$s"
	fail_quietly add b http://10.0.0.1/ --secret "$s"
	fail_quietly set a --batch 0 --show-secret
	fail_quietly set a --secret "${s}x"
	fail_quietly set a --secret "${s%?}"
	fail_quietly set a --secret "whsec${b}"
	fail_quietly set a --secret "${s}AAAA"
	fail_quietly set a --secret "whsec_${b}${b}${b}"
	fail_quietly rotate-secret a --secret "${s}!" --show-secret
	fail_quietly rotate-secret a --secret "$s" --tenant x
	fail_quietly disable a --secret "$s"
	fail_quietly list --format bogus --show-secret
	fail_quietly set a --url "http://x:$b@example.com/"
	fail_quietly set a --header "Authorization Bearer $b"
	fail_quietly set a --header "Bad Name: $b"
	fail_quietly set a --header "Authorization: Bearer $b"$'\r\n'"X: y"
	fail_quietly set a --header "Host: $b"
	run sql "select secret from endpoints"
	assert_output "$s"
}

# --- beside copies of itself ----------------------------------------------

@test "8 parallel adds on one new store all succeed" {
	pids=()
	for i in 1 2 3 4 5 6 7 8; do
		whk-endpoint add "e$i" "https://example.com/$i" >"out$i" 2>"err$i" &
		pids+=($!)
	done
	rcs=
	for p in "${pids[@]}"; do
		wait "$p" && rc=0 || rc=$?
		rcs="$rcs$rc "
	done
	assert_equal "$rcs" "0 0 0 0 0 0 0 0 "
	run cat err1 err2 err3 err4 err5 err6 err7 err8
	assert_output ""
	run sh -c "cat out* | jq -r .endpoint | sort | tr '\n' ' '"
	assert_output "e1 e2 e3 e4 e5 e6 e7 e8 "
	run sh -c "whk-endpoint list | jq -r .endpoint | tr '\n' ' '"
	assert_output "e1 e2 e3 e4 e5 e6 e7 e8 "
	run sql "PRAGMA user_version; select count(*) from endpoints"
	assert_output $'4\n8'
}

@test "8 parallel sets of one endpoint all succeed; one of them wins whole" {
	whk-endpoint add a https://example.com/ >/dev/null
	pids=()
	for i in 1 2 3 4 5 6 7 8; do
		whk-endpoint set a --batch "$i" --concurrency "$i" >"out$i" 2>"err$i" &
		pids+=($!)
	done
	rcs=
	for p in "${pids[@]}"; do
		wait "$p" && rc=0 || rc=$?
		rcs="$rcs$rc "
	done
	assert_equal "$rcs" "0 0 0 0 0 0 0 0 "
	run cat err1 err2 err3 err4 err5 err6 err7 err8
	assert_output ""
	# Each printed the record it committed.
	for i in 1 2 3 4 5 6 7 8; do
		run jq -c '[.batch,.concurrency]' "out$i"
		assert_output "[$i,$i]"
	done
	run sql "select batch = concurrency and batch between 1 and 8, count(*) from endpoints"
	assert_output "1|1"
}
