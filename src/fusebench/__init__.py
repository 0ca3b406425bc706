"""fusebench: a reproducible benchmark for deep image fusion."""

__version__ = "0.1.0"
