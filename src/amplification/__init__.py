"""Iterated Amplification (Christiano, Shlegeris & Amodei 2018) as a reproducible pipeline."""
__version__ = "0.1.0"
