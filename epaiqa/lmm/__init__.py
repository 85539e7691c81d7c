"""Building blocks of the EPAIQA LMM (paper §4): backbones, instruction pairs, level scoring, grounding."""
