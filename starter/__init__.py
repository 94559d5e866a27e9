"""Entry points: the `techconnect` command line, settings, the Temporal client, the dev stack."""
