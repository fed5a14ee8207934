# fish completion for whk-batch; records come on stdin, so no arguments.
complete -c whk-batch -f
complete -c whk-batch -s s -l store -r -F -d 'The store'
complete -c whk-batch -l pending -d 'Take every stored event not yet routed'
complete -c whk-batch -l limit -x -d 'With --pending: at most N events'
complete -c whk-batch -s n -l dry-run -d 'Show what would be made; write nothing'
complete -c whk-batch -s v -l verbose -d 'A summary on stderr at the end'
complete -c whk-batch -s h -l help -d 'Show this help'
complete -c whk-batch -s V -l version -d 'Show the version'
