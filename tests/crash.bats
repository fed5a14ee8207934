#!/usr/bin/env bats
# Crashes: whk-ingest | whk-batch | whk-deliver, beside whk-retry |
# whk-deliver, round after round on the next slice of events, with some
# of the stages killed with SIGKILL at a random moment; then the
# reconciliation of share/examples/crontab, with WHK_NOW moved past the
# retry schedule, the leases and the hand-outs, until nothing is left to
# do.  What every crash must leave: each event printed is stored; each
# event stored reached every endpoint it matches, as the receiver saw it;
# no webhook was sent twice at once, and one only repeats a send that
# was in flight at a crash; the store is intact.
#
# Short in `make check` (2,000 events, 5 rounds); WHK_FULL=1 (make
# check-full): 20,000 events, 20 rounds.  The random choices come from a
# seed that is printed; WHK_SEED=N replays them (the moments they fall on
# are the machine's).

load helpers

bats_require_minimum_version 1.5.0

# Whatever a failed round left running, then the receivers.
teardown() {
	local f pid
	for f in "$BATS_TEST_TMPDIR"/*.pid; do
		[ -f "$f" ] || continue
		pid=$(cat "$f")
		[ "$(readlink "/proc/$pid/cwd" 2>/dev/null)" = "$BATS_TEST_TMPDIR" ] ||
		    continue
		kill -KILL "$pid" 2>/dev/null || true
	done
	receivers_stop
}

# --- helpers of this suite -------------------------------------------------

# stage NAME MS CMD...: (in a pipeline) CMD, its pid in NAME.pid: the
# program's own, since the pipeline's subshell is replaced by it.  With
# MS, a SIGKILL reaches it MS milliseconds after it started (timed from
# here, so that the time it takes another process to start and look
# does not count).
stage() {
	local name=$1 ms=$2 pid=$BASHPID
	shift 2
	echo "$pid" >"$name.pid.new" && mv "$name.pid.new" "$name.pid"
	if [ -n "$ms" ]; then
		{
			sleep "$(printf '%d.%03d' $((ms / 1000)) $((ms % 1000)))"
			kill -KILL "$pid"
		} </dev/null >/dev/null 2>&1 3>&- &
	fi
	exec "$@"
}

# stage_ok ROUND NAME STATUS UPSTREAM_KILLED DOWNSTREAM_KILLED: a stage
# that was not killed exited as documented for what happened around it.
# 137 is a SIGKILL that landed; 1 for whk-batch and whk-deliver when the
# stage before was killed in the middle of a line (that line is rejected,
# by number) or, for whk-deliver, when an attempt failed (the flaky
# endpoint); 141 (SIGPIPE) for a writer whose reader was killed.
# Anything on stderr other than those rejections fails the test.
stage_ok() {
	local r=$1 name=$2 st=$3 up=$4 down=$5 prog err
	err="$name.$r.err"
	case $name in
	ingest) prog=whk-ingest ;;
	batch) prog=whk-batch ;;
	retry) prog=whk-retry ;;
	*) prog=whk-deliver ;;
	esac
	[ "$st" -eq 137 ] && return 0
	if [ "$st" -eq 141 ] && [ "$down" -eq 1 ]; then
		[ ! -s "$err" ] && return 0
	fi
	case $name/$st in
	ingest/0 | retry/0 | batch/0 | deliver/0 | rdeliver/0) ;;
	deliver/1 | rdeliver/1) ;;
	batch/1) [ "$up" -eq 1 ] || { echo "round $r: $prog exit 1" >&2; return 1; } ;;
	*)
		echo "round $r: $prog exit $st: $(cat "$err")" >&2
		return 1
		;;
	esac
	if [ -s "$err" ] && { [ "$up" -eq 0 ] ||
	    grep -Ev "^$prog: line [0-9]+: " "$err" >&2; }; then
		echo "round $r: $prog said: $(cat "$err")" >&2
		return 1
	fi
	return 0
}

# feed FILE: FILE's lines in ten parts, 20 ms apart, as an application
# writes them: whk-ingest commits and prints part by part, so that a
# kill can land between its commits as well as in one.
feed() {
	awk -v k="$(($(wc -l <"$1") / 10 + 1))" '{ print }
	    NR % k == 0 { fflush(); system("sleep 0.02") }' "$1"
}

# round R EVENTS KILL...: slice R (EVENTS events) through whk-ingest |
# whk-batch | whk-deliver, and whk-retry | whk-deliver beside it; each
# KILL is STAGE:MS, a SIGKILL to STAGE (ingest, batch, deliver, retry, or
# rdeliver: the retry lane's deliverer) MS milliseconds after it started;
# then wait for the rest.  Every whk-ingest's stdout is kept
# (ingest.R.out) by a tee that outlives whatever is killed after it.
# Appends to kills.landed the stages a kill ended, to rounds a line
# on the round.
round() {
	local r=$1 n=$2 s k up down name p1 p2
	local -A at=()
	shift 2
	for k in "$@"; do
		at[${k%:*}]=${k#*:}
	done
	events "$n" $(((r - 1) * n)) >"slice.$r"
	rm -f ./*.pid
	# (set +e: a stage's failure is a status to record, not the end; the
	# shell's own word on a stage killed goes to /dev/null.)
	{
		set +e
		feed "slice.$r" |
		    stage ingest "${at[ingest]:-}" whk-ingest 2>"ingest.$r.err" |
		    tee -p "ingest.$r.out" |
		    stage batch "${at[batch]:-}" whk-batch 2>"batch.$r.err" |
		    stage deliver "${at[deliver]:-}" whk-deliver \
		    >"deliver.$r.out" 2>"deliver.$r.err"
		echo "${PIPESTATUS[1]} ${PIPESTATUS[3]} ${PIPESTATUS[4]}" >"pipe.$r.st"
	} </dev/null 2>/dev/null 3>&- &
	p1=$!
	{
		set +e
		stage retry "${at[retry]:-}" whk-retry 2>"retry.$r.err" |
		    stage rdeliver "${at[rdeliver]:-}" whk-deliver \
		    >"rdeliver.$r.out" 2>"rdeliver.$r.err"
		echo "${PIPESTATUS[0]} ${PIPESTATUS[1]}" >"retry.$r.st"
	} </dev/null 2>/dev/null 3>&- &
	p2=$!
	if ! wait_files 60 "pipe.$r.st" "retry.$r.st"; then
		ps -o pid,args --ppid "$p1,$p2" >&2
		return 1
	fi
	wait "$p1" "$p2"
	read -r s_ingest s_batch s_deliver <"pipe.$r.st"
	read -r s_retry s_rdeliver <"retry.$r.st"
	for name in ingest batch deliver retry rdeliver; do
		s=s_$name
		[ "${!s}" -ne 137 ] || echo "$name" >>kills.landed
	done
	echo "round $r: kill $* -> exit ingest $s_ingest, batch $s_batch," \
	    "deliver $s_deliver, retry $s_retry, rdeliver $s_rdeliver" >>rounds
	up=$([ "$s_ingest" -eq 137 ] && echo 1 || echo 0)
	down=$([ "$s_deliver" -eq 137 ] && echo 1 || echo 0)
	stage_ok "$r" ingest "$s_ingest" 0 0 &&
	    stage_ok "$r" batch "$s_batch" "$up" "$down" &&
	    stage_ok "$r" deliver "$s_deliver" \
	    "$([ "$s_batch" -eq 137 ] && echo 1 || echo 0)" 0 &&
	    stage_ok "$r" retry "$s_retry" 0 \
	    "$([ "$s_rdeliver" -eq 137 ] && echo 1 || echo 0)" &&
	    stage_ok "$r" rdeliver "$s_rdeliver" \
	    "$([ "$s_retry" -eq 137 ] && echo 1 || echo 0)" 0
}

# reconcile: what cron runs (share/examples/crontab), each time an hour
# later by WHK_NOW than the last: past every lease (timeout + 30 s), every
# hand-out (10 min) and every step of the flaky endpoint's schedule;
# until no event is unrouted and no webhook is pending, failed or leased,
# 40 times at most.  Sets $loops; fails on any exit status but the
# documented ones (whk-deliver: 1 when the flaky endpoint failed) or on
# anything said on stderr.
reconcile() {
	local t left st
	t=$(($(date +%s) + 3600))
	for loops in $(seq 40); do
		{
			WHK_NOW=$t whk-batch --pending 2>rec.err </dev/null |
			    WHK_NOW=$t whk-deliver --pending -q >>rec.out \
			    2>>rec.err
			st="${PIPESTATUS[*]}"
		} || true
		{
			WHK_NOW=$t whk-retry -q 2>>rec.err </dev/null |
			    WHK_NOW=$t whk-deliver -q >>rec.out 2>>rec.err
			st="$st ${PIPESTATUS[*]}"
		} || true
		if [[ ! $st =~ ^0\ [01]\ 0\ [01]$ ]] || [ -s rec.err ]; then
			echo "reconciliation $loops: exit $st: $(cat rec.err)" >&2
			return 1
		fi
		left=$(sql "SELECT (SELECT count(*) FROM unrouted) +
		    (SELECT count(*) FROM webhooks WHERE state IN ('pending', 'failed')
		    OR lease_until IS NOT NULL)")
		[ "$left" -eq 0 ] && return 0
		t=$((t + 3600))
	done
	echo "the reconciliation did not converge in 40 runs: $left left" >&2
	return 1
}

@test "SIGKILL at random moments to whk-ingest, whk-batch, whk-deliver and whk-retry: after the reconciliation every stored event reached every matching endpoint, nothing printed is lost, no webhook was sent twice at once, the store is intact" {
	if [ "${WHK_FULL:-0}" = 1 ]; then
		total=20000 rounds=20
	else
		total=2000 rounds=5
	fi
	per=$((total / rounds))
	seed=${WHK_SEED:-$RANDOM}
	RANDOM=$seed
	echo "# crash: seed $seed (WHK_SEED=$seed replays it), $total events in $rounds rounds" >&3
	receiver_start
	whk-endpoint add a "$RECEIVER/ok?to=a" --allow-private >/dev/null
	whk-endpoint add b "$RECEIVER/ok?to=b" --allow-private --batch 10 \
	    --filter '.data.order % 3 == 0' >/dev/null
	whk-endpoint add c "$RECEIVER/flaky?p=30&to=c" --allow-private \
	    --tenant t2 --batch 3 --schedule '1s*40' >/dev/null
	stages=(ingest batch deliver retry)
	declare -A before=([ingest]= [batch]=ingest [deliver]="ingest batch"
	    [retry]= [rdeliver]=retry)
	# The time in which each stage's kill falls, in ms from its start:
	# whk-ingest and whk-batch run as long as the feed (200 ms and what
	# its events take), whk-deliver a little longer, whk-retry a moment.
	declare -A span=([ingest]=250 [batch]=300 [deliver]=300 [retry]=20
	    [rdeliver]=150)
	: >kills.landed
	for r in $(seq "$rounds"); do
		# One of the four programs in turn, and any stage by chance
		# but those before it in its pipeline (whose end would end it
		# before its moment), each at a moment of its own within about
		# the time it takes.
		kill=("${stages[$(((r - 1) % 4))]}")
		for s in ingest batch deliver retry rdeliver; do
			[[ " ${kill[0]} ${before[${kill[0]}]} " != *" $s "* ]] &&
			    [ $((RANDOM % 4)) -eq 0 ] && kill+=("$s")
		done
		for k in "${!kill[@]}"; do
			kill[k]="${kill[k]}:$((RANDOM % ${span[${kill[k]}]}))"
		done
		round "$r" "$per" "${kill[@]}"
	done
	cat rounds	# (shown should the test fail)
	reconcile

	# Nothing is left to do, nothing gave up, and the store is intact.
	run sql "SELECT count(*) FROM unrouted"
	assert_output 0
	run sql "SELECT state, count(*) FROM webhooks GROUP BY 1"
	assert_output "delivered|$(sql 'SELECT count(*) FROM webhooks')"
	run sql "PRAGMA integrity_check"
	assert_output ok

	# Every event whk-ingest printed (a whole line) is stored.
	cat ingest.*.out | grep -o '"event":"evt_[0-9A-HJKMNP-TV-Z]\{26\}"' |
	    cut -d'"' -f4 | sort >printed
	sql "SELECT id FROM events" | sort >stored
	run comm -23 printed stored
	assert_output ""
	[ "$(wc -l <printed)" -gt 0 ]

	# Every stored event reached each endpoint it matches, answered 2xx,
	# and no endpoint got an event it does not match.
	sql "SELECT key FROM events" | matching >expected
	received_pairs >pairs
	cut -d' ' -f1,2 pairs | sort -u >got
	run comm -3 expected got
	assert_output ""
	# Each event went to an endpoint in one webhook (whatever its sends).
	run eval "cut -d' ' -f1,2 pairs | uniq -d"
	assert_output ""

	# No webhook was being sent twice at the same moment.
	run eval 'received | jq .concurrent | sort -u'
	assert_output 1

	# A webhook answered 2xx more than once repeats only sends that were
	# in flight at a crash: each repeat is an attempt the store recorded
	# as of unknown outcome (a lease that ran out).
	received | jq -r 'select(.status >= 200 and .status < 300) | .id' |
	    sort | uniq -c | awk '{ print $2, $1 }' | sort >sends
	sql "SELECT w.id, count(a.seq) FROM webhooks w LEFT JOIN attempts a
	    ON a.webhook_seq = w.seq AND a.error LIKE 'unknown outcome%'
	    GROUP BY w.id" | tr '|' ' ' | sort >lost
	run join -a1 -e0 -o 0,1.2,2.2 sends lost
	assert_equal "$(echo "$output" | wc -l)" "$(sql 'SELECT count(*) FROM webhooks')"
	run awk '$2 > 1 + $3' <<<"$output"
	assert_output ""
	# The store says delivered once per webhook, as the receiver saw.
	run sql "SELECT count(*) FROM (SELECT webhook_seq FROM attempts
	    WHERE outcome = 'delivered' GROUP BY 1 HAVING count(*) > 1)"
	assert_output 0

	dups=$(awk '$2 > 1 { n += $2 - 1 } END { print n + 0 }' sends)
	duphooks=$(awk '$2 > 1 { n++ } END { print n + 0 }' sends)
	echo "# crash: $(wc -l <stored) events stored, $(wc -l <printed) printed;" \
	    "$(sql 'SELECT count(*) FROM webhooks') webhooks, $(received | wc -l) requests;" \
	    "duplicates: $dups repeated sends of $duphooks webhooks" \
	    "($(awk '{ n += $2 } END { print n + 0 }' lost) attempts of unknown outcome);" \
	    "kills that landed: $(sort kills.landed | uniq -c | awk '{ printf "%s%s %s", s, $2, $1; s = ", " }');" \
	    "converged in $loops reconciliation runs" >&3
}
