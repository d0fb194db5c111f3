"""Subcommands of `replicate`: every module here with a `register(subparsers)` adds its own."""
