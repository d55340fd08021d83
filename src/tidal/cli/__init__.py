"""Command-line interface: thin — parse, call, print."""
