"""The explanation judge of Table 4 (paper §5.1, appendix F).

Its rules (:mod:`~epaiqa.judge.rules`) and the ``epaiqa judge`` run over a stage-3 run's explanations
(:mod:`~epaiqa.judge.run`).
"""
