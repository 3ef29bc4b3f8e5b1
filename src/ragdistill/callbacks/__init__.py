"""Lightning callbacks, one per file; ``conf/callbacks/`` selects them."""
