"""Example model: predicts the species of an iris flower from four measurements of it."""

__version__ = "0.1.0"
