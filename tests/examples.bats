#!/usr/bin/env bats
# share/examples: the crontab and the systemd units, run as written.  The
# commands are taken from the files (the crontab's command fields, the
# services' ExecStart shell strings) and run with sh -c, in the
# environment cron or systemd would give them, against a real store and
# the loopback receiver.

load helpers

bats_require_minimum_version 1.5.0

EX="$WHK_ROOT/share/examples"

# 2026-11-23T10:00:00Z, the clock the tests start from.
T0=1795428000

# --- helpers of this suite -------------------------------------------------

# ep NAME PATH: an endpoint at the receiver's PATH that gets the events of
# tenant NAME.
ep() {
	whk-endpoint add "$1" "$RECEIVER$2" --allow-private --tenant "$1" >/dev/null
}

# ingest TENANT...: one event for each TENANT, stored and not routed (as
# when no pipeline went further than whk-ingest).
ingest() {
	local t
	for t in "$@"; do
		printf '{"tenant":"%s","type":"order.created"}\n' "$t"
	done | whk-ingest >/dev/null
}

# states: "endpoint|state|attempts" of every webhook, by endpoint.
states() {
	sql "SELECT e.name, w.state, w.attempts FROM webhooks w
	    JOIN endpoints e ON e.id = w.endpoint_id ORDER BY e.name, w.seq"
}

# cron_jobs: the crontab's jobs, one a line, as "M H DOM MON DOW COMMAND"
# (comments, blank lines and environment settings left out).
cron_jobs() {
	grep -Ev '^[[:space:]]*(#|$)' "$EX/crontab" |
	    grep -Ev '^[[:space:]]*[A-Za-z_][A-Za-z0-9_]*[[:space:]]*='
}

# cron_command PATTERN: the command field of the one job that matches
# PATTERN, as written (cron gives it to /bin/sh -c).
cron_command() {
	local jobs
	jobs=$(cron_jobs | grep -E -- "$1")
	if [ "$(printf '%s\n' "$jobs" | grep -c .)" -ne 1 ]; then
		echo "not one crontab job matches '$1': $jobs" >&2
		return 1
	fi
	printf '%s\n' "$jobs" | sed -E 's/^[[:space:]]*([^[:space:]]+[[:space:]]+){5}//'
}

# as_cron WHEN COMMAND: run COMMAND as cron would, with sh -c, in cron's
# small environment (HOME, LOGNAME, SHELL, a PATH that finds whk, as the
# crontab's PATH line would), no WHK_STORE: the default store under HOME.
as_cron() {
	WHK_NOW=$1 run --separate-stderr env -i HOME="$HOME_DIR" \
	    LOGNAME=whk SHELL=/bin/sh PATH="$WHK_ROOT/bin:/usr/bin:/bin" \
	    WHK_NOW="$1" /bin/sh -c "$2" </dev/null
}

# unit_value FILE KEY: the values of KEY= in the unit FILE, one a line.
unit_value() {
	sed -n "s/^[[:space:]]*$2[[:space:]]*=[[:space:]]*//p" "$1"
}

# specifiers TEXT: TEXT with systemd's specifiers as they would be for a
# system unit, %S being $STATE_DIR; an unknown one fails.
specifiers() {
	local rest=$1 out= c
	while [ -n "$rest" ]; do
		case $rest in
		%*)
			c=${rest:1:1}
			case $c in
			%) out+=% ;;
			S) out+=$STATE_DIR ;;
			*)
				echo "specifier %$c: not emulated by this test" >&2
				return 1
				;;
			esac
			rest=${rest:2}
			;;
		*)
			out+=${rest:0:1}
			rest=${rest:1}
			;;
		esac
	done
	printf '%s' "$out"
}

# unit_env FILE: the unit's Environment= assignments, NAME=VALUE a line,
# unquoted and with their specifiers.
unit_env() {
	local v a
	unit_value "$1" Environment | while IFS= read -r v; do
		eval "set -- $v"
		for a in "$@"; do
			specifiers "$a" || return 1
			echo
		done
	done
}

# unit_script FILE: the shell string of the service's one ExecStart=,
# which must be /bin/sh -c '...'.
unit_script() {
	local v
	v=$(unit_value "$1" ExecStart)
	if [ "$(printf '%s\n' "$v" | grep -c .)" -ne 1 ]; then
		echo "$1: not one ExecStart=: $v" >&2
		return 1
	fi
	case $v in
	*'$'* | *%*)
		echo "$1: ExecStart uses \$ or %: not emulated by this test" >&2
		return 1
		;;
	esac
	eval "set -- $v"
	if [ "$#" -ne 3 ] || [ "$1" != /bin/sh ] || [ "$2" != -c ]; then
		echo "$1: ExecStart is not /bin/sh -c 'SCRIPT': $v" >&2
		return 1
	fi
	printf '%s\n' "$3"
}

# as_systemd WHEN SERVICE: run SERVICE's ExecStart as systemd would for a
# system unit: its StateDirectory made under $STATE_DIR, its Environment=,
# a PATH that finds whk, and nothing else.
as_systemd() {
	local f="$EX/systemd/$2" script d m envs=()
	script=$(unit_script "$f") || return 1
	mapfile -t envs < <(unit_env "$f")
	m=$(unit_value "$f" StateDirectoryMode)
	for d in $(unit_value "$f" StateDirectory); do
		mkdir -p -m "${m:-0755}" "$STATE_DIR/$d"
	done
	WHK_NOW=$1 run --separate-stderr env -i \
	    PATH="$WHK_ROOT/bin:/usr/local/bin:/usr/bin:/bin" "${envs[@]}" \
	    WHK_NOW="$1" /bin/sh -c "$script" </dev/null
}

# --- cron ------------------------------------------------------------------

@test "crontab: two jobs, each minute, the reconciliation loop and the slow lane; no % in them (cron would cut the command there)" {
	[ -f "$EX/crontab" ]
	run cron_jobs
	[ "${#lines[@]}" -eq 2 ]
	run eval 'cron_jobs | awk "{ print \$1, \$2, \$3, \$4, \$5 }"'
	assert_output $'* * * * *\n* * * * *'
	run cron_command 'whk-batch'
	assert_success
	assert_output --regexp '^whk-batch --pending( [^|]*)? \| whk-deliver --pending'
	run cron_command 'whk-retry'
	assert_success
	assert_output --regexp '^whk-retry( [^|]*)? \| whk-deliver'
	run grep -c '%' <(cron_jobs)
	assert_output 0
	# The environment lines it offers, uncommented, are what cron takes.
	run grep -E '^#(WHK_STORE|PATH)=' "$EX/crontab"
	[ "${#lines[@]}" -eq 2 ]
}

@test "crontab: the reconciliation line routes the events no pipeline did and sends each webhook once; the slow-lane line retries a failure once it is due" {
	receiver_start
	HOME_DIR=$BATS_TEST_TMPDIR/home
	mkdir -p "$HOME_DIR"
	reconcile=$(cron_command 'whk-batch')
	retry=$(cron_command 'whk-retry')
	# The jobs' default store is the user's, the one whk-endpoint and the
	# pipelines use in the user's shell.
	export HOME=$HOME_DIR WHK_NOW=$T0
	unset WHK_STORE
	ep a /ok
	ep f '/fail-first?k=1'
	ingest a a f
	export WHK_STORE=$HOME_DIR/.local/share/whk/whk.db
	as_cron $T0 "$reconcile"
	# (whk-deliver's exit: one attempt failed.  Cron mails nothing.)
	assert_failure 1
	assert_output ""
	[ -z "$stderr" ]
	run states
	assert_output $'a|delivered|1\na|delivered|1\nf|failed|1'
	assert_equal "$(received | wc -l)" 3
	# The slow lane: not before the first retry (5 s, +-20%) is due.
	as_cron $T0 "$retry"
	assert_success
	assert_output ""
	[ -z "$stderr" ]
	as_cron $((T0 + 3)) "$retry"
	assert_success
	assert_equal "$(received | wc -l)" 3
	# A minute later, the loop does not retry (first attempts only); the
	# slow lane does.
	as_cron $((T0 + 60)) "$reconcile"
	assert_success
	assert_output ""
	assert_equal "$(received | wc -l)" 3
	as_cron $((T0 + 60)) "$retry"
	assert_success
	assert_output ""
	[ -z "$stderr" ]
	run states
	assert_output $'a|delivered|1\na|delivered|1\nf|delivered|2'
	run sql "SELECT kind, outcome, count(*) FROM attempts GROUP BY 1, 2 ORDER BY 1, 2"
	assert_output $'first|delivered|2\nfirst|failed|1\nretry|delivered|1'
	# Each minute after: nothing more.
	for m in 2 3; do
		as_cron $((T0 + m * 60)) "$reconcile"
		assert_success
		as_cron $((T0 + m * 60)) "$retry"
		assert_success
	done
	assert_equal "$(received | wc -l)" 4
	[ "$(mode "$WHK_STORE")" = 600 ]
}

# --- systemd ---------------------------------------------------------------

@test "systemd: both services run /bin/sh -c on the same store, in their state directory" {
	for u in whk-reconcile whk-retry; do
		[ -f "$EX/systemd/$u.service" ]
		[ -f "$EX/systemd/$u.timer" ]
	done
	STATE_DIR=/var/lib
	run unit_script "$EX/systemd/whk-reconcile.service"
	assert_success
	assert_output --regexp '^whk-batch --pending( [^|]*)? \| whk-deliver --pending'
	run unit_script "$EX/systemd/whk-retry.service"
	assert_success
	assert_output --regexp '^whk-retry( [^|]*)? \| whk-deliver'
	run unit_env "$EX/systemd/whk-reconcile.service"
	assert_success
	assert_output "WHK_STORE=/var/lib/whk/whk.db"
	run unit_env "$EX/systemd/whk-retry.service"
	assert_output "WHK_STORE=/var/lib/whk/whk.db"
	for u in whk-reconcile whk-retry; do
		assert_equal "$(unit_value "$EX/systemd/$u.service" Type)" oneshot
		assert_equal "$(unit_value "$EX/systemd/$u.service" StateDirectory)" whk
	done
}

@test "systemd: whk-reconcile.service sends what no pipeline did; whk-retry.service retries a failure once due" {
	receiver_start
	STATE_DIR=$BATS_TEST_TMPDIR/state
	mkdir -p "$STATE_DIR"
	store=$(unit_env "$EX/systemd/whk-retry.service" | sed -n 's/^WHK_STORE=//p')
	[ "$store" = "$STATE_DIR/whk/whk.db" ]
	mkdir -p -m 0700 "$STATE_DIR/whk"
	export WHK_STORE=$store WHK_NOW=$T0
	ep a /ok
	ep f '/fail-first?k=1'
	ingest a f
	as_systemd $T0 whk-reconcile.service
	# (One attempt failed: whk-deliver's exit 1 marks the run failed.)
	assert_failure 1
	[ -z "$stderr" ]
	run states
	assert_output $'a|delivered|1\nf|failed|1'
	as_systemd $T0 whk-retry.service
	assert_success
	[ -z "$stderr" ]
	assert_equal "$(received | wc -l)" 2
	as_systemd $((T0 + 30)) whk-retry.service
	assert_success
	[ -z "$stderr" ]
	run states
	assert_output $'a|delivered|1\nf|delivered|2'
	as_systemd $((T0 + 60)) whk-reconcile.service
	assert_success
	as_systemd $((T0 + 90)) whk-retry.service
	assert_success
	assert_equal "$(received | wc -l)" 3
	[ "$(mode "$STATE_DIR/whk")" = 700 ]
}

@test "systemd: the timers start their services each minute, the slow lane half a minute after the loop" {
	command -v systemd-analyze >/dev/null || skip "no systemd-analyze here"
	for u in whk-reconcile whk-retry; do
		# No Unit=: each starts the service of its own name.
		assert_equal "$(unit_value "$EX/systemd/$u.timer" Unit)" ""
		assert_equal "$(unit_value "$EX/systemd/$u.timer" WantedBy)" timers.target
	done
	run systemd-analyze calendar "$(unit_value "$EX/systemd/whk-reconcile.timer" OnCalendar)"
	assert_success
	assert_line "Normalized form: *-*-* *:*:00"
	run systemd-analyze calendar "$(unit_value "$EX/systemd/whk-retry.timer" OnCalendar)"
	assert_success
	assert_line "Normalized form: *-*-* *:*:30"
}

@test "systemd: systemd-analyze verify finds nothing to say about the four units, their man pages included" {
	command -v systemd-analyze >/dev/null || skip "no systemd-analyze here"
	mkdir units
	cp "$EX"/systemd/*.service "$EX"/systemd/*.timer units/
	man=--man=no
	command -v man >/dev/null && man=--man=yes
	MANPATH=$WHK_ROOT/share/man run systemd-analyze verify "$man" \
	    units/whk-reconcile.timer units/whk-reconcile.service \
	    units/whk-retry.timer units/whk-retry.service
	assert_success
	assert_output ""
}
