"""Data for training and evaluating lverse models."""
