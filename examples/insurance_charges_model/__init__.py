"""Example model: predicts insurance charges from a person's attributes."""

__version__ = "0.1.0"
