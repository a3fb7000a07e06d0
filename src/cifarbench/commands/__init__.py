"""One module per verb of ``python -m cifarbench``.

Each has ``SUMMARY`` and ``main(argv)``, which raises on bad input (``cifarbench.__main__`` turns errors into
messages and exit statuses). Kept import-free, so that the lab can reach
:func:`cifarbench.commands.fit.run_fit` without loading the other verbs.
"""
