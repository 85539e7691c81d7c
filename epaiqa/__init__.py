"""EPAIQA: explainable quality assessment of partially AI-edited images (PAIs)."""

__version__ = "0.1.0"
