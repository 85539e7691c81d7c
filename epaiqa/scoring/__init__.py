"""Scoring new images with a trained run.

The interface every scorer shares (:mod:`~epaiqa.scoring.base`), its implementations (a baseline, an EPAIQA stage,
a best competitor) and :func:`~epaiqa.scoring.load.load_scorer`, which picks the right one for a run folder.
"""
