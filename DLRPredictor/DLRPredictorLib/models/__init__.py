"""Fitted steps: selection, classifiers, signatures, fusion, clinical model, nomogram, safe persistence."""
