# fish completion for whk-endpoint

# The words typed before the cursor that are not options or their values:
# the command first, then its arguments.
function __whk_endpoint_args
    set -l skip
    for t in (commandline -opc)[2..-1]
        if set -q skip[1]
            set skip
        else if string match -qr -- '^(-s|--(store|url|secret|secret-file|tenant|types|filter|group-by|template|batch|batch-bytes|window|timeout|concurrency|rate|schedule|header|format|reason|grace))$' $t
            set skip 1
        else if not string match -q -- '-*' $t
            echo $t
        end
    end
end

# __whk_endpoint_using [CMD...]: with no CMD, true if no command is typed
# yet; else true if the command typed is one of CMD.
function __whk_endpoint_using
    set -l args (__whk_endpoint_args)
    if set -q argv[1]
        contains -- "$args[1]" $argv
    else
        not set -q args[1]
    end
end

# True when the command typed takes a NAME and none is typed yet.
function __whk_endpoint_wants_name
    set -l args (__whk_endpoint_args)
    test (count $args) -eq 1
    and contains -- $args[1] set show disable enable rm rotate-secret
end

# The endpoint names in the store, honouring -s/--store on the line.
function __whk_endpoint_names
    set -l store
    argparse -i 's/store=' -- (commandline -opc)[2..-1] 2>/dev/null
    and set -q _flag_store
    and set store --store=$_flag_store
    whk-endpoint $store list --format json 2>/dev/null |
        string replace -rf '^\{"endpoint":"([^"]*)".*' '$1'
end

set -l c whk-endpoint
complete -c $c -f
complete -c $c -s s -l store -r -F -d 'The store'
complete -c $c -n __whk_endpoint_using -s h -l help -d 'Show this help'
complete -c $c -n __whk_endpoint_using -s V -l version -d 'Show the version'

complete -c $c -n __whk_endpoint_using -a add -d 'Add an endpoint'
complete -c $c -n __whk_endpoint_using -a set -d 'Change settings of an endpoint'
complete -c $c -n __whk_endpoint_using -a list -d 'List the endpoints'
complete -c $c -n __whk_endpoint_using -a show -d 'Show an endpoint'
complete -c $c -n __whk_endpoint_using -a disable -d 'Stop deliveries to an endpoint'
complete -c $c -n __whk_endpoint_using -a enable -d 'Resume deliveries to an endpoint'
complete -c $c -n __whk_endpoint_using -a rm -d 'Remove an endpoint'
complete -c $c -n __whk_endpoint_using -a rotate-secret -d 'Give an endpoint a new signing secret'

complete -c $c -n __whk_endpoint_wants_name -a '(__whk_endpoint_names)' -d Endpoint

set -l addset '__whk_endpoint_using add set'
complete -c $c -n '__whk_endpoint_using set' -l url -x -d 'Where to POST'
complete -c $c -n '__whk_endpoint_using add set rotate-secret' -l secret -x -d 'Signing secret (whsec_...)'
complete -c $c -n '__whk_endpoint_using add set rotate-secret' -l secret-file -r -F -d 'Read the signing secret from a file (-: stdin)'
complete -c $c -n $addset -l tenant -x -d 'Only events of this tenant'
complete -c $c -n $addset -l types -x -d 'Comma-separated types, globs allowed'
complete -c $c -n $addset -l filter -x -d 'Send only events for which JQ is true'
complete -c $c -n $addset -l group-by -x -d 'One webhook holds only events with equal keys'
complete -c $c -n $addset -l template -x -d 'Shape the body (the event, or the array of them)'
complete -c $c -n $addset -l batch -x -d 'Events per webhook (default 1)'
complete -c $c -n $addset -l batch-bytes -x -d 'Bytes per webhook (default 256K)'
complete -c $c -n $addset -l window -x -d 'Keep a group open this long (default 0s)'
complete -c $c -n $addset -l timeout -x -d 'Request timeout (default 15s)'
complete -c $c -n $addset -l concurrency -x -d 'Requests in flight to it (default 8)'
complete -c $c -n $addset -l rate -x -d 'At most N requests a second (0: no cap)'
complete -c $c -n $addset -l schedule -x -d "Retry steps for whk-retry ('' for the default)"
complete -c $c -n $addset -l header -x -d "Extra request header 'K: V'"
complete -c $c -n $addset -l allow-private -d 'Allow private, loopback and link-local hosts'
complete -c $c -n '__whk_endpoint_using set' -l no-allow-private -d 'Refuse private hosts again'
complete -c $c -n '__whk_endpoint_using add set list show disable enable rotate-secret' -l show-secret -d 'Print secrets and header values'
complete -c $c -n '__whk_endpoint_using list' -l format -x -a 'json table' -d 'Output format'
complete -c $c -n '__whk_endpoint_using disable' -l reason -x -d 'Why the endpoint is disabled'
complete -c $c -n '__whk_endpoint_using rotate-secret' -l grace -x -d 'How long the old secret stays valid (24h)'
