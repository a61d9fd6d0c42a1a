"""The ``contextseg`` command line."""
