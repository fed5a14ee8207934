#!/usr/bin/env bats
# Shell completions of whk-ingest, whk-endpoint, whk-batch, whk-deliver,
# whk-retry and whk-log (completions/): bash completion offers commands,
# options and endpoint names; every option of --help is completed by bash,
# zsh and fish; the files parse.

load helpers

COMP="$WHK_ROOT/completions"
BASH_COMPLETION=/usr/share/bash-completion/bash_completion

# complete_bash PROG LINE: what bash completion of PROG offers for LINE with
# the cursor at its end, one per line, as bash would ask for it.
complete_bash() {
	bash --norc --noprofile -c '
		source "$1" && source "$2" || exit 1
		COMP_LINE=$3 COMP_POINT=${#3}
		read -ra COMP_WORDS <<<"$3"
		[[ $3 == *" " ]] && COMP_WORDS+=("")
		COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
		fn=$(complete -p "${COMP_WORDS[0]}") || exit 1
		fn=${fn#*-F } fn=${fn%% *}
		"$fn" "${COMP_WORDS[0]}" "${COMP_WORDS[COMP_CWORD]}" \
			"${COMP_WORDS[COMP_CWORD-1]}"
		printf "%s\n" "${COMPREPLY[@]}"' \
		_ "$BASH_COMPLETION" "$COMP/bash/$1" "$2"
}

# complete_fish PROG LINE: what fish offers for LINE, one per line.
complete_fish() {
	fish --no-config -c 'source $argv[1]; complete -C $argv[2] | cut -f1' \
		"$COMP/fish/$1.fish" "$2"
}

@test "bash completion files parse" {
	run bash -n "$COMP/bash/whk-ingest"
	assert_success
	assert_output ""
	run bash -n "$COMP/bash/whk-endpoint"
	assert_success
	assert_output ""
	run bash -n "$COMP/bash/whk-batch"
	assert_success
	assert_output ""
	run bash -n "$COMP/bash/whk-deliver"
	assert_success
	assert_output ""
	run bash -n "$COMP/bash/whk-retry"
	assert_success
	assert_output ""
	run bash -n "$COMP/bash/whk-log"
	assert_success
	assert_output ""
}

@test "bash completes commands, options and --format values" {
	[ -f "$BASH_COMPLETION" ] || skip "bash-completion is not installed"
	run complete_bash whk-endpoint 'whk-endpoint '
	assert_success
	assert_output "$(printf '%s\n' add set list show disable enable rm rotate-secret)"
	run complete_bash whk-endpoint 'whk-endpoint -s x.db ro'
	assert_output "rotate-secret"
	run complete_bash whk-ingest 'whk-ingest --map'
	assert_success
	assert_output "--map"
	run complete_bash whk-ingest 'whk-ingest --ma'
	assert_output "$(printf '%s\n' --map --max-bytes)"
	run complete_bash whk-ingest 'whk-ingest --map . --ty'
	assert_output "--type-from"
	run complete_bash whk-endpoint 'whk-endpoint list --format '
	assert_output "$(printf '%s\n' json table)"
	run complete_bash whk-endpoint 'whk-endpoint disable a --'
	assert_output "$(printf '%s\n' --reason --show-secret --store)"
	run complete_bash whk-endpoint 'whk-endpoint set a --no'
	assert_output "--no-allow-private"
	run complete_bash whk-endpoint 'whk-endpoint add a --no'
	assert_output ""
	run complete_bash whk-batch 'whk-batch --p'
	assert_success
	assert_output "--pending"
	assert_equal "$(complete_bash whk-batch 'whk-batch --pending --' | sort)" \
		"$(printf '%s\n' --dry-run --help --limit --pending --store --verbose --version)"
	run complete_bash whk-batch 'whk-batch --pending --limit '
	assert_output ""
	run complete_bash whk-deliver 'whk-deliver --p'
	assert_success
	assert_output "--pending"
	assert_equal "$(complete_bash whk-deliver 'whk-deliver --pending --' | sort)" \
		"$(printf '%s\n' --concurrency --endpoint --help --limit --pending \
			--quiet --store --verbose --version)"
	run complete_bash whk-deliver 'whk-deliver --limit '
	assert_output ""
	run complete_bash whk-deliver 'whk-deliver -c '
	assert_output ""
	run complete_bash whk-endpoint 'whk-endpoint set a --sch'
	assert_output "--schedule"
	run complete_bash whk-endpoint 'whk-endpoint add a --schedule '
	assert_output ""
	run complete_bash whk-endpoint 'whk-endpoint set --schedule 1m '
	assert_output ""
}

@test "bash completes the options of whk-retry's two modes" {
	[ -f "$BASH_COMPLETION" ] || skip "bash-completion is not installed"
	run complete_bash whk-retry 'whk-retry --n'
	assert_success
	assert_output "--now"
	assert_equal "$(complete_bash whk-retry 'whk-retry --' | sort)" \
		"$(printf '%s\n' --disable-after --dry-run --help --limit --now \
			--quiet --schedule --store --trip-after --verbose --version)"
	assert_equal "$(complete_bash whk-retry 'whk-retry --now --' | sort)" \
		"$(printf '%s\n' --dry-run --endpoint --help --limit --quiet \
			--since --status --store --until --verbose --version)"
	assert_equal "$(complete_bash whk-retry 'whk-retry --schedule 1m --' | sort)" \
		"$(printf '%s\n' --disable-after --dry-run --help --limit --quiet \
			--schedule --store --trip-after --verbose --version)"
	run complete_bash whk-retry 'whk-retry --status dead --n'
	assert_output "--now"
	run complete_bash whk-retry 'whk-retry --now --status '
	assert_output "$(printf '%s\n' pending failed delivered dead)"
	run complete_bash whk-retry 'whk-retry --now --status=d'
	assert_output "$(printf '%s\n' delivered dead)"
	run complete_bash whk-retry 'whk-retry --schedule '
	assert_output ""
	run complete_bash whk-retry 'whk-retry --now --since '
	assert_output ""
	run complete_bash whk-retry 'whk-retry --now msg_'
	assert_output ""
}

@test "bash completes whk-log's commands, their options and values" {
	[ -f "$BASH_COMPLETION" ] || skip "bash-completion is not installed"
	run complete_bash whk-log 'whk-log '
	assert_success
	assert_output "$(printf '%s\n' events webhooks attempts endpoints show follow \
		metrics slo stats prune)"
	run complete_bash whk-log 'whk-log s'
	assert_output "$(printf '%s\n' show slo stats)"
	run complete_bash whk-log 'whk-log -s x.db e'
	assert_output "$(printf '%s\n' events endpoints)"
	assert_equal "$(complete_bash whk-log 'whk-log --' | sort)" \
		"$(printf '%s\n' --help --store --version)"
	assert_equal "$(complete_bash whk-log 'whk-log events --' | sort)" \
		"$(printf '%s\n' --endpoint --event --format --jq --key --limit --since \
			--status --store --tenant --type --until --webhook)"
	assert_equal "$(complete_bash whk-log 'whk-log webhooks --' | sort)" \
		"$(printf '%s\n' --endpoint --event --format --jq --key --limit --since \
			--status --store --until --webhook)"
	assert_equal "$(complete_bash whk-log 'whk-log endpoints --' | sort)" \
		"$(printf '%s\n' --endpoint --format --jq --limit --status --store)"
	assert_equal "$(complete_bash whk-log 'whk-log show --' | sort)" \
		"$(printf '%s\n' --format --store)"
	assert_equal "$(complete_bash whk-log 'whk-log follow --' | sort)" \
		"$(printf '%s\n' --endpoint --format --jq --store)"
	assert_equal "$(complete_bash whk-log 'whk-log -f --' | sort)" \
		"$(printf '%s\n' --endpoint --format --jq --store)"
	assert_equal "$(complete_bash whk-log 'whk-log metrics --')" "--store"
	assert_equal "$(complete_bash whk-log 'whk-log slo --' | sort)" \
		"$(printf '%s\n' --endpoint --since --store --target --within)"
	assert_equal "$(complete_bash whk-log 'whk-log stats --' | sort)" \
		"$(printf '%s\n' --endpoint --format --since --store)"
	assert_equal "$(complete_bash whk-log 'whk-log prune --' | sort)" \
		"$(printf '%s\n' --before --dry-run --store)"
	run complete_bash whk-log 'whk-log events --status '
	assert_output "$(printf '%s\n' routed unrouted)"
	run complete_bash whk-log 'whk-log webhooks --status '
	assert_output "$(printf '%s\n' pending failed delivered dead)"
	run complete_bash whk-log 'whk-log attempts --status=d'
	assert_output "delivered"
	run complete_bash whk-log 'whk-log endpoints --status '
	assert_output "$(printf '%s\n' enabled disabled)"
	run complete_bash whk-log 'whk-log attempts --format '
	assert_output "$(printf '%s\n' json table tsv)"
	run complete_bash whk-log 'whk-log -f --format '
	assert_output "$(printf '%s\n' json table tsv)"
	run complete_bash whk-log 'whk-log show --format '
	assert_output "$(printf '%s\n' json table)"
	run complete_bash whk-log 'whk-log stats --format '
	assert_output "$(printf '%s\n' json table)"
	run complete_bash whk-log 'whk-log webhooks --since '
	assert_output ""
	run complete_bash whk-log 'whk-log prune --before '
	assert_output ""
	run complete_bash whk-log 'whk-log show msg_'
	assert_output ""
}

@test "bash completes files for whk-ingest and --store" {
	[ -f "$BASH_COMPLETION" ] || skip "bash-completion is not installed"
	touch events.ndjson other.db
	run complete_bash whk-ingest 'whk-ingest ev'
	assert_output "events.ndjson"
	run complete_bash whk-endpoint 'whk-endpoint list --store oth'
	assert_output "other.db"
	run complete_bash whk-ingest 'whk-ingest --require oth'
	assert_output ""
	run complete_bash whk-batch 'whk-batch -s oth'
	assert_output "other.db"
	run complete_bash whk-batch 'whk-batch ev'
	assert_output ""
	run complete_bash whk-deliver 'whk-deliver -s oth'
	assert_output "other.db"
	run complete_bash whk-deliver 'whk-deliver ev'
	assert_output ""
	run complete_bash whk-retry 'whk-retry -s oth'
	assert_output "other.db"
	run complete_bash whk-retry 'whk-retry --now ev'
	assert_output ""
	run complete_bash whk-log 'whk-log -s oth'
	assert_output "other.db"
	run complete_bash whk-log 'whk-log webhooks --store=oth'
	assert_output "other.db"
	run complete_bash whk-log 'whk-log show ev'
	assert_output ""
}

@test "bash completes endpoint names from the store given on the line" {
	[ -f "$BASH_COMPLETION" ] || skip "bash-completion is not installed"
	whk-endpoint add a https://example.com/ >/dev/null
	whk-endpoint add b https://example.com/b >/dev/null
	whk-endpoint -s other.db add c https://example.com/ >/dev/null
	run complete_bash whk-endpoint 'whk-endpoint show '
	assert_success
	assert_output "$(printf '%s\n' a b)"
	run complete_bash whk-endpoint 'whk-endpoint rotate-secret --grace 1h '
	assert_output "$(printf '%s\n' a b)"
	run complete_bash whk-endpoint 'whk-endpoint -s other.db show '
	assert_output "c"
	run complete_bash whk-endpoint 'whk-endpoint rm --store=other.db '
	assert_output "c"
	run complete_bash whk-endpoint 'whk-endpoint show a '
	assert_output ""
	run complete_bash whk-endpoint 'whk-endpoint add '
	assert_output ""
	run complete_bash whk-endpoint 'whk-endpoint -s missing/x.db show '
	assert_output ""
}

@test "bash completes endpoint names for whk-deliver --endpoint" {
	[ -f "$BASH_COMPLETION" ] || skip "bash-completion is not installed"
	whk-endpoint add a https://example.com/ >/dev/null
	whk-endpoint add b https://example.com/b >/dev/null
	whk-endpoint -s other.db add c https://example.com/ >/dev/null
	run complete_bash whk-deliver 'whk-deliver --endpoint '
	assert_success
	assert_output "$(printf '%s\n' a b)"
	run complete_bash whk-deliver 'whk-deliver --pending -e '
	assert_output "$(printf '%s\n' a b)"
	run complete_bash whk-deliver 'whk-deliver --endpoint=b'
	assert_output "b"
	run complete_bash whk-deliver 'whk-deliver -s other.db --endpoint '
	assert_output "c"
	run complete_bash whk-deliver 'whk-deliver --store=other.db -e '
	assert_output "c"
	run complete_bash whk-deliver 'whk-deliver --endpoint a b'
	assert_output ""
	run complete_bash whk-deliver 'whk-deliver -s missing/x.db -e '
	assert_output ""
}

@test "bash completes endpoint names for whk-retry --endpoint" {
	[ -f "$BASH_COMPLETION" ] || skip "bash-completion is not installed"
	whk-endpoint add a https://example.com/ >/dev/null
	whk-endpoint add b https://example.com/b >/dev/null
	whk-endpoint -s other.db add c https://example.com/ >/dev/null
	run complete_bash whk-retry 'whk-retry --now --endpoint '
	assert_success
	assert_output "$(printf '%s\n' a b)"
	run complete_bash whk-retry 'whk-retry --now --endpoint=b'
	assert_output "b"
	run complete_bash whk-retry 'whk-retry -s other.db --now --endpoint '
	assert_output "c"
	run complete_bash whk-retry 'whk-retry --store=other.db --endpoint '
	assert_output "c"
	run complete_bash whk-retry 'whk-retry --now --endpoint a b'
	assert_output ""
	run complete_bash whk-retry 'whk-retry -s missing/x.db --endpoint '
	assert_output ""
}

@test "bash completes endpoint names for whk-log --endpoint" {
	[ -f "$BASH_COMPLETION" ] || skip "bash-completion is not installed"
	whk-endpoint add a https://example.com/ >/dev/null
	whk-endpoint add b https://example.com/b >/dev/null
	whk-endpoint -s other.db add c https://example.com/ >/dev/null
	run complete_bash whk-log 'whk-log webhooks --endpoint '
	assert_success
	assert_output "$(printf '%s\n' a b)"
	run complete_bash whk-log 'whk-log -f --endpoint=b'
	assert_output "b"
	run complete_bash whk-log 'whk-log -s other.db slo --endpoint '
	assert_output "c"
	run complete_bash whk-log 'whk-log attempts --store=other.db --endpoint '
	assert_output "c"
	run complete_bash whk-log 'whk-log webhooks --endpoint a b'
	assert_output ""
	run complete_bash whk-log 'whk-log -s missing/x.db stats --endpoint '
	assert_output ""
}

@test "every long option of --help is completed by bash, zsh and fish" {
	local prog opt missing="" n=0
	for prog in whk-ingest whk-endpoint whk-batch whk-deliver whk-retry \
		whk-log; do
		for opt in $("$prog" --help | grep -o -- '--[a-z-]*' | sort -u); do
			n=$((n + 1))
			grep -Eq -- "(^|[^a-z-])$opt([^a-z-]|\$)" "$COMP/bash/$prog" ||
				missing+=" bash/$prog:$opt"
			grep -Eq -- "(^|[^a-z-])$opt([^a-z-]|\$)" "$COMP/zsh/_$prog" ||
				missing+=" zsh/_$prog:$opt"
			grep -Eq -- "-l ${opt#--}( |\$)" "$COMP/fish/$prog.fish" ||
				missing+=" fish/$prog.fish:$opt"
		done
	done
	[ "$n" -gt 45 ] || fail "too few options in --help: $n"
	assert_equal "$missing" ""
}

@test "zsh completion files parse" {
	command -v zsh >/dev/null || skip "zsh is not installed"
	run zsh -n "$COMP/zsh/_whk-ingest"
	assert_success
	assert_output ""
	run zsh -n "$COMP/zsh/_whk-endpoint"
	assert_success
	assert_output ""
	run zsh -n "$COMP/zsh/_whk-batch"
	assert_success
	assert_output ""
	run zsh -n "$COMP/zsh/_whk-deliver"
	assert_success
	assert_output ""
	run zsh -n "$COMP/zsh/_whk-retry"
	assert_success
	assert_output ""
	run zsh -n "$COMP/zsh/_whk-log"
	assert_success
	assert_output ""
	run head -q -n 1 "$COMP/zsh/_whk-ingest" "$COMP/zsh/_whk-endpoint" \
		"$COMP/zsh/_whk-batch" "$COMP/zsh/_whk-deliver" "$COMP/zsh/_whk-retry" \
		"$COMP/zsh/_whk-log"
	assert_output "$(printf '%s\n' '#compdef whk-ingest' '#compdef whk-endpoint' \
		'#compdef whk-batch' '#compdef whk-deliver' '#compdef whk-retry' \
		'#compdef whk-log')"
}

@test "fish completion files parse and complete commands and names" {
	command -v fish >/dev/null || skip "fish is not installed"
	run fish --no-config -n "$COMP/fish/whk-ingest.fish"
	assert_success
	assert_output ""
	run fish --no-config -n "$COMP/fish/whk-endpoint.fish"
	assert_success
	assert_output ""
	run fish --no-config -n "$COMP/fish/whk-batch.fish"
	assert_success
	assert_output ""
	run fish --no-config -n "$COMP/fish/whk-deliver.fish"
	assert_success
	assert_output ""
	run fish --no-config -n "$COMP/fish/whk-retry.fish"
	assert_success
	assert_output ""
	run fish --no-config -n "$COMP/fish/whk-log.fish"
	assert_success
	assert_output ""
	whk-endpoint add a https://example.com/ >/dev/null
	whk-endpoint -s other.db add c https://example.com/ >/dev/null
	run complete_fish whk-endpoint 'whk-endpoint '
	assert_output "$(printf '%s\n' add disable enable list rm rotate-secret set show)"
	run complete_fish whk-endpoint 'whk-endpoint show '
	assert_output "a"
	run complete_fish whk-endpoint 'whk-endpoint -s other.db show '
	assert_output "c"
	run complete_fish whk-endpoint 'whk-endpoint list --format '
	assert_output "$(printf '%s\n' json table)"
	run complete_fish whk-ingest 'whk-ingest --ma'
	assert_output "$(printf '%s\n' --map --max-bytes)"
	run complete_fish whk-batch 'whk-batch --p'
	assert_output "--pending"
	run complete_fish whk-deliver 'whk-deliver --p'
	assert_output "--pending"
	run complete_fish whk-deliver 'whk-deliver --endpoint '
	assert_output "a"
	run complete_fish whk-deliver 'whk-deliver -s other.db -e '
	assert_output "c"
	run complete_fish whk-deliver 'whk-deliver --store=other.db --endpoint '
	assert_output "c"
	run complete_fish whk-endpoint 'whk-endpoint set a --sch'
	assert_output "--schedule"
	run complete_fish whk-retry 'whk-retry --n'
	assert_output "--now"
	run complete_fish whk-retry 'whk-retry --now --st'
	assert_output "$(printf '%s\n' --status --store)"
	run complete_fish whk-retry 'whk-retry --schedule 1m --st'
	assert_output "--store"
	run complete_fish whk-retry 'whk-retry --now --status '
	assert_output "$(printf '%s\n' dead delivered failed pending)"
	run complete_fish whk-retry 'whk-retry --now --endpoint '
	assert_output "a"
	run complete_fish whk-retry 'whk-retry -s other.db --now --endpoint '
	assert_output "c"
	run complete_fish whk-retry 'whk-retry --now '
	assert_output ""
	run complete_fish whk-log 'whk-log '
	assert_output "$(printf '%s\n' attempts endpoints events follow metrics prune \
		show slo stats webhooks)"
	run complete_fish whk-log 'whk-log webhooks --st'
	assert_output "$(printf '%s\n' --status --store)"
	run complete_fish whk-log 'whk-log webhooks --status '
	assert_output "$(printf '%s\n' dead delivered failed pending)"
	run complete_fish whk-log 'whk-log events --status '
	assert_output "$(printf '%s\n' routed unrouted)"
	run complete_fish whk-log 'whk-log events --t'
	assert_output "$(printf '%s\n' --tenant --type)"
	run complete_fish whk-log 'whk-log attempts --t'
	assert_output ""
	run complete_fish whk-log 'whk-log -f --'
	assert_output "$(printf '%s\n' --endpoint --format --jq --store)"
	run complete_fish whk-log 'whk-log show --format '
	assert_output "$(printf '%s\n' json table)"
	run complete_fish whk-log 'whk-log attempts --format '
	assert_output "$(printf '%s\n' json table tsv)"
	run complete_fish whk-log 'whk-log prune --'
	assert_output "$(printf '%s\n' --before --dry-run --store)"
	run complete_fish whk-log 'whk-log webhooks --endpoint '
	assert_output "a"
	run complete_fish whk-log 'whk-log -s other.db -f --endpoint '
	assert_output "c"
	run complete_fish whk-log 'whk-log show '
	assert_output ""
}
