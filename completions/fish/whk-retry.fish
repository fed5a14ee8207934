# fish completion for whk-retry; ids (msg_...) are not completed.

# The endpoint names in the store, honouring -s/--store on the line.
function __whk_retry_endpoints
    set -l store
    argparse -i 's/store=' -- (commandline -opc)[2..-1] 2>/dev/null
    and set -q _flag_store
    and set store --store=$_flag_store
    whk-endpoint $store list --format json 2>/dev/null |
        string replace -rf '^\{"endpoint":"([^"]*)".*' '$1'
end

# Two modes: the slow lane, and --now (resend).  True if the line is in
# the mode given: an option of that mode is typed (--status= included).
function __whk_retry_mode
    set -l re '^--(schedule|trip-after|disable-after)(=|$)'
    test "$argv[1]" = now
    and set re '^--(now|endpoint|status|since|until)(=|$)'
    string match -qr -- $re (commandline -opc)[2..-1] (commandline -ct)
end

set -l c whk-retry
set -l lane 'not __whk_retry_mode now'
set -l now '__whk_retry_mode now'
complete -c $c -f
complete -c $c -s s -l store -r -F -d 'The store'
complete -c $c -n $lane -l schedule -x -d 'Retry steps for endpoints without their own'
complete -c $c -n $lane -l trip-after -x -d "Trip an endpoint's breaker after N failures (5)"
complete -c $c -n $lane -l disable-after -x -d 'Disable a tripped endpoint failing this long (5d)'
complete -c $c -n 'not __whk_retry_mode lane; and not __fish_seen_argument -l now' -l now -d 'Resend the webhooks given, whatever their state'
complete -c $c -n $now -l endpoint -x -a '(__whk_retry_endpoints)' -d 'Only webhooks of this endpoint'
complete -c $c -n $now -l status -x -a 'pending failed delivered dead' -d 'Only webhooks in this state'
complete -c $c -n $now -l since -x -d 'Only webhooks made since (time, or duration ago)'
complete -c $c -n $now -l until -x -d 'Only webhooks made until (time, or duration ago)'
complete -c $c -s l -l limit -x -d 'At most N webhooks'
complete -c $c -s n -l dry-run -d 'Show what would be handed out or resent'
complete -c $c -s q -l quiet -d 'Nothing on stderr but errors'
complete -c $c -s v -l verbose -d 'A summary on stderr at the end'
complete -c $c -s h -l help -d 'Show this help'
complete -c $c -s V -l version -d 'Show the version'
