"""Statistics (AUC, DeLong, calibration, decision curves) and reports."""
