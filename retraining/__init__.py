"""Retraining: train → evaluate challenger vs champion → register → promote (no Kafka, no Faust)."""
