"""The lab's experiments (lab2-report.txt, C2-C8) as overrides for the one ``fit`` path, and the report.

``python -m cifarbench lab <part>`` (:mod:`cifarbench.commands.lab`) runs a part from the registry in
:mod:`cifarbench.lab.parts`. Each part fits through :func:`cifarbench.lab.runs.fit_once` once per run, reads
the runs' ``timings.csv`` and TensorBoard scalars (:mod:`cifarbench.run_folder`), and writes a CSV, a markdown
table and PNG plots under ``<out>/<part>/`` (:mod:`cifarbench.tables`, :mod:`cifarbench.plots`).
``lab all`` adds ``report.md`` (:mod:`cifarbench.lab.report`) with Q1-Q4 (:mod:`cifarbench.lab.questions`).
"""
