"""Metrics (scikit-learn) and plots (matplotlib PNGs) for trained models."""
