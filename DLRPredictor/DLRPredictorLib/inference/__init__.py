"""Prediction with a verified bundle: the frozen pipeline and the predictor."""
