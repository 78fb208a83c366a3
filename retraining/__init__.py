"""retraining."""
