# fish completion for whk-log; ids (evt_..., msg_...) are not completed.

# The command typed before the cursor: the first word that is not an
# option or an option's value; "follow" for -f without one (or with
# "attempts").
function __whk_log_cmd
    set -l skip
    set -l follow
    set -l cmd
    for t in (commandline -opc)[2..-1]
        if set -q skip[1]
            set skip
        else if string match -qr -- '^(-s|-l|--(store|endpoint|tenant|type|status|since|until|event|webhook|key|format|jq|limit|target|within|before))$' $t
            set skip 1
        else if test "$t" = -f
            set follow 1
        else if not string match -q -- '-*' $t
            and not set -q cmd[1]
            set cmd $t
        end
    end
    if set -q follow[1]; and contains -- "$cmd" '' attempts
        echo follow
    else if set -q cmd[1]
        echo $cmd
    end
end

# __whk_log_using [CMD...]: with no CMD, true if no command is typed yet
# (nor -f); else true if the command typed is one of CMD.
function __whk_log_using
    set -l cmd (__whk_log_cmd)
    if set -q argv[1]
        contains -- "$cmd" $argv
    else
        not set -q cmd[1]
    end
end

# The values of --status for the listing typed.
function __whk_log_states
    switch (__whk_log_cmd)
        case events
            printf '%s\n' routed unrouted
        case webhooks
            printf '%s\n' pending failed delivered dead
        case attempts
            printf '%s\n' delivered failed
        case endpoints
            printf '%s\n' enabled disabled
    end
end

# The endpoint names in the store, honouring -s/--store on the line.
function __whk_log_endpoints
    set -l store
    argparse -i 's/store=' -- (commandline -opc)[2..-1] 2>/dev/null
    and set -q _flag_store
    and set store --store=$_flag_store
    whk-endpoint $store list --format json 2>/dev/null |
        string replace -rf '^\{"endpoint":"([^"]*)".*' '$1'
end

set -l c whk-log
complete -c $c -f
complete -c $c -s s -l store -r -F -d 'The store'
complete -c $c -n __whk_log_using -s f -d 'The same as follow'
complete -c $c -n __whk_log_using -s h -l help -d 'Show this help'
complete -c $c -n __whk_log_using -s V -l version -d 'Show the version'

complete -c $c -n __whk_log_using -a events -d 'List the events stored'
complete -c $c -n __whk_log_using -a webhooks -d 'List the webhooks'
complete -c $c -n __whk_log_using -a attempts -d 'List the attempts'
complete -c $c -n __whk_log_using -a endpoints -d 'List the endpoints and their webhooks by state'
complete -c $c -n __whk_log_using -a show -d 'Show an event or a webhook in full'
complete -c $c -n __whk_log_using -a follow -d 'Print attempts as they are recorded'
complete -c $c -n __whk_log_using -a metrics -d 'Print Prometheus metrics'
complete -c $c -n __whk_log_using -a slo -d 'The share of events delivered in time'
complete -c $c -n __whk_log_using -a stats -d 'Attempts, success rate and latency'
complete -c $c -n __whk_log_using -a prune -d 'Delete delivered and dead history'

set -l lists '__whk_log_using events webhooks attempts endpoints'
set -l past '__whk_log_using events webhooks attempts'
complete -c $c -n '__whk_log_using events webhooks attempts endpoints follow slo stats' -l endpoint -x -a '(__whk_log_endpoints)' -d 'Only this endpoint'
complete -c $c -n '__whk_log_using events' -l tenant -x -d 'Events of this tenant'
complete -c $c -n '__whk_log_using events' -l type -x -d 'Events of this type'
complete -c $c -n $lists -l status -x -a '(__whk_log_states)' -d 'Only records in this state'
complete -c $c -n '__whk_log_using events webhooks attempts slo stats' -l since -x -d 'At or after (time, or duration ago)'
complete -c $c -n $past -l until -x -d 'Before (time, or duration ago)'
complete -c $c -n $past -l event -x -d 'The event, the webhooks holding it, their attempts'
complete -c $c -n $past -l webhook -x -d 'The webhook, its events, its attempts'
complete -c $c -n $past -l key -x -d "The same as --event, by the event's key"
complete -c $c -n '__whk_log_using events webhooks attempts endpoints follow' -l format -x -a 'json table tsv' -d 'Output format'
complete -c $c -n '__whk_log_using show stats' -l format -x -a 'json table' -d 'Output format'
complete -c $c -n '__whk_log_using events webhooks attempts endpoints follow' -l jq -x -d 'Apply a jq filter to each record'
complete -c $c -n $lists -s l -l limit -x -d 'At most N records, newest first (0: all)'
complete -c $c -n '__whk_log_using slo' -l target -x -d 'The share to meet, percent (99.9)'
complete -c $c -n '__whk_log_using slo' -l within -x -d 'The bound from event to delivery (5m)'
complete -c $c -n '__whk_log_using prune' -l before -x -d 'Delete history older than this'
complete -c $c -n '__whk_log_using prune' -s n -l dry-run -d 'Count what would go, remove nothing'
