"""Prediction with a verified bundle.

- ``results``: what a prediction answers (PipelineOutput <- CasePrediction <- PredictionResult);
- ``pipeline``: the frozen fusion steps of a bundle (signatures, combined model, nomogram);
- ``predictor``: one case through a verified bundle (lesion slice, radiomics, network, fusion).
- ``input_checks``: checks of a caller's arguments (arrays, ImageVolume, spacing, options), each
  raising an InputError that names the argument.
"""
