"""Hand-crafted features: pyradiomics driven by the bundle's parameter file."""
