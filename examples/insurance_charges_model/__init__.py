"""Example model: predicts insurance charges from a person's attributes."""
