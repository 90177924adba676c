"""Subcommands of the `amplification` command line (see amplification.cli)."""
