"""The benchmark read back from records: tables, HTML and figures.

The paper's tables (:mod:`~epaiqa.report.tables`), Table 4 from judged runs (:mod:`~epaiqa.report.table4`), the
HTML page (:mod:`~epaiqa.report.html`) and the figures (:mod:`~epaiqa.report.figures`).
"""
