"""`python -m cli ...`: the same as the `techconnect` command."""

from cli.app import app

if __name__ == "__main__":
    app()
