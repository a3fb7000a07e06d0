"""The lab's experiments (lab2-report.txt, C2-C8) as overrides for the one ``fit`` path, and the report.

``python -m cifarbench lab <part>`` runs :mod:`cifarbench.lab.cli`. Each part in :mod:`cifarbench.lab.parts`
calls ``cifarbench.cli.main(["fit", ...])`` once per run, reads the runs' ``timings.csv`` and TensorBoard
scalars (:mod:`cifarbench.lab.runs`), and writes a CSV, a markdown table and PNG plots under
``<out>/<part>/`` (:mod:`cifarbench.lab.tables`, :mod:`cifarbench.lab.plots`).
"""
