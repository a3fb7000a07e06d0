"""One module per verb of ``python -m cifarbench``.

Each has ``SUMMARY`` and ``main(argv)``, which raises on bad input (``cifarbench.__main__`` turns errors into
messages and exit statuses). The verbs sit on top: they use the library, and no library module imports them
(the one entry to fit, :func:`cifarbench.fitting.run_fit`, lives below them). This file imports nothing, so
that ``__main__`` loads only the verb it runs.
"""
