# fish completion for whk-deliver; records come on stdin, so no arguments.

# The endpoint names in the store, honouring -s/--store on the line.
function __whk_deliver_endpoints
    set -l store
    argparse -i 's/store=' -- (commandline -opc)[2..-1] 2>/dev/null
    and set -q _flag_store
    and set store --store=$_flag_store
    whk-endpoint $store list --format json 2>/dev/null |
        string replace -rf '^\{"endpoint":"([^"]*)".*' '$1'
end

set -l c whk-deliver
complete -c $c -f
complete -c $c -s s -l store -r -F -d 'The store'
complete -c $c -s p -l pending -d 'Take every webhook never attempted'
complete -c $c -s e -l endpoint -x -a '(__whk_deliver_endpoints)' -d 'Only webhooks of this endpoint'
complete -c $c -s l -l limit -x -d 'At most N attempts'
complete -c $c -s c -l concurrency -x -d 'Requests in flight in all (default 64)'
complete -c $c -s q -l quiet -d 'No progress line on a terminal'
complete -c $c -s v -l verbose -d 'A summary on stderr at the end'
complete -c $c -s h -l help -d 'Show this help'
complete -c $c -s V -l version -d 'Show the version'
