"""trigger: jet-tagging networks from training to bit-exact Level-1 trigger firmware."""

__version__ = "0.1.0"
