"""EPAIQA: explainable quality assessment of partially AI-edited images (PAIs)."""

__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    """``epaiqa.load_scorer`` (a trained run as a scorer), imported on first use."""
    if name == "load_scorer":
        from epaiqa.scoring.load import load_scorer

        return load_scorer
    raise AttributeError(f"module 'epaiqa' has no attribute {name!r}")
