"""Records and metrics: what a run measured, and how.

A run's ``results.json`` (:mod:`~epaiqa.records.results`), the correlations the tables report
(:mod:`~epaiqa.records.metrics`), and external predictions made into records (:mod:`~epaiqa.records.imported`).
"""
