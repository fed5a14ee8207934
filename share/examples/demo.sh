#!/bin/sh
# The main job end to end, on a store of its own (build/demo/whk.db, kept
# afterwards so it can be explored) and a receiver on a loopback port.
# Each step runs as far as the programs exist.
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
PATH="$root/bin:$PATH"
dir="$root/build/demo"
rm -rf "$dir"
mkdir -p "$dir"
export WHK_STORE="$dir/whk.db"
cd "$dir"

if [ -t 1 ]; then bold=$(printf '\033[1m'); off=$(printf '\033[0m'); else bold= off=; fi
step() { printf '\n%s$ %s%s\n' "$bold" "$*" "$off"; }
have() { [ -x "$root/bin/$1" ]; }

secret="whsec_$(head -c 32 /dev/urandom | base64)"
port=""
if have test-receiver; then
	test-receiver --port-file port --log received.ndjson --secret "$secret" &
	rpid=$!
	trap 'kill "$rpid" 2>/dev/null; wait "$rpid" 2>/dev/null || :' EXIT
	i=0
	while [ ! -s port ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
	port=$(cat port)
fi
url="http://127.0.0.1:${port:-9}"

step "whk-endpoint add billing $url/ok --types 'invoice.*' --allow-private"
whk-endpoint add billing "$url/ok" --types 'invoice.*' --allow-private \
    --secret "$secret" >/dev/null
step "whk-endpoint add audit $url/ok --batch 10 --window 1s --allow-private"
whk-endpoint add audit "$url/ok" --batch 10 --window 1s --allow-private \
    --secret "$secret" >/dev/null
step "whk-endpoint add acme $url/fail-first?k=1 --tenant acme --allow-private"
whk-endpoint add acme "$url/fail-first?k=1" --tenant acme --allow-private \
    --secret "$secret" >/dev/null

step "whk-endpoint list"
whk-endpoint list --format table

cat >events.ndjson <<'NDJSON'
{"id":"inv-1001","type":"invoice.paid","tenant":"acme","amount":1999}
{"id":"inv-1002","type":"invoice.paid","tenant":"globex","amount":25000000000000000001}
{"id":"usr-77","type":"user.created","tenant":"acme","email":"a@example.com"}
{"id":"inv-1001","type":"invoice.paid","tenant":"acme","amount":1999}
not json
NDJSON
step "cat events.ndjson"
cat events.ndjson

if ! have whk-batch; then
	step "whk-ingest <events.ndjson"
	whk-ingest <events.ndjson || echo "(exit $?: one line was rejected)"
	step "sqlite3 \$WHK_STORE 'select seq, key, type, tenant from events'"
	sqlite3 -header -column "$WHK_STORE" \
	    'select seq, key, type, tenant, body from events'
	exit 0
fi
if ! have whk-deliver; then
	step "whk-ingest <events.ndjson | whk-batch -v"
	{ whk-ingest <events.ndjson || :; } | whk-batch -v
	step "what each webhook will carry (its body is built from its events)"
	sqlite3 -header -column "$WHK_STORE" "select w.id as webhook,
	    e.name as endpoint, w.events, w.bytes, w.group_key as 'group'
	    from webhooks w join endpoints e on e.id = w.endpoint_id
	    order by w.seq"
	printf '\nThe store is kept in %s\n' "$WHK_STORE"
	exit 0
fi
step "whk-ingest <events.ndjson | whk-batch | whk-deliver"
{ whk-ingest <events.ndjson || :; } | whk-batch | whk-deliver ||
    echo "(exit $?: acme's receiver fails a first attempt)"
if ! have whk-log; then
	step "the failed attempts"
	sqlite3 -header -column "$WHK_STORE" "select w.id as webhook,
	    e.name as endpoint, a.n as attempt, a.status, a.error, w.state
	    from attempts a join webhooks w on w.seq = a.webhook_seq
	    join endpoints e on e.id = a.endpoint_id
	    where a.outcome = 'failed' order by a.seq"
fi

if have whk-retry; then
	step "whk-retry -v    # the slow lane schedules the failures (none due yet)"
	whk-retry -v
	step "WHK_NOW=+1m whk-retry | whk-deliver    # the cron line, a minute later"
	later=$(( $(date +%s) + 60 ))
	WHK_NOW=$later whk-retry | WHK_NOW=$later whk-deliver || :
	step "whk-retry --now ID | whk-deliver    # resend a delivered webhook by hand"
	id=$(sqlite3 "$WHK_STORE" "select id from webhooks
	    where state = 'delivered' order by seq limit 1")
	whk-retry --now "$id" | whk-deliver || :
fi
if [ -n "$port" ]; then
	step "what the receiver got (path, webhook-id, signature verified)"
	jq -c '{path, id, sig, body}' received.ndjson 2>/dev/null ||
	    cat received.ndjson
fi
if have whk-log; then
	step "whk-log webhooks"
	whk-log webhooks --format table
	step "whk-log attempts"
	whk-log attempts --format table
	step "whk-log slo --target 99 --within 5m"
	whk-log slo --target 99 --within 5m || :
fi
printf '\nThe store is kept in %s\n' "$WHK_STORE"
