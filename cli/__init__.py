"""The `poseanimate` command line: serve, worker, animate, poses, eval, submit, make-*-model."""
