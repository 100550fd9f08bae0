"""Training a bundle: configuration, data, CNN fitting and pretraining, held-out evaluation, model card."""
