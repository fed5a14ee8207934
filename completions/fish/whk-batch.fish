# fish completion for whk-batch
complete -c whk-batch -f
complete -c whk-batch -s s -l store -r -F -d 'the store'
complete -c whk-batch -l pending -d 'take every event not yet routed'
complete -c whk-batch -l limit -x -d 'with --pending: at most N events'
complete -c whk-batch -s n -l dry-run -d 'show what would be made; write nothing'
complete -c whk-batch -s v -l verbose -d 'a summary on stderr at the end'
complete -c whk-batch -s h -l help -d 'show the help'
complete -c whk-batch -s V -l version -d 'show the version'
