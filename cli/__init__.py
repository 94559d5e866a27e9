"""`techconnect`: the command line, one module per command group (cli/app.py assembles them).

Output and exit codes only; the work is done by the client layer (starter/).
"""
