"""Training Metrics Server: live metrics for reinforcement-learning and ML training."""

__version__ = "0.1.0"
