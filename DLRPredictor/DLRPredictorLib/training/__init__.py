"""Training a bundle: configuration, data, CNN fitting and pretraining, cross-fitting, held-out evaluation.

- config: the training YAML (TrainConfig and its sections), load_config, validation.
- trainer: train_from_manifest, the order of the steps (`dlrpredictor train`).
- data: TrainingCase, contour variants of a case, the cached radiomics table, crop arrays.
- splits: FoldPlan and plan_splits (patient-level test split and training folds).
- run: TrainingCohort, OofScores, ClinicalFit and TrainingRun (what a finished run holds).
- crossfit: CrossFitter (per-fold networks and signatures, out-of-fold scores, final models).
- fusion_fit: the DLR fusion and the clinical combined model on the out-of-fold scores.
- cnn_config: CnnTrainConfig and TrainResult of one CNN training run.
- cnn_data: crop and label checks, the inner validation split, batch resampling, augmentation.
- cnn: train_cnn (epochs, class balance, EMA, early stopping, exact resume).
- checkpoints: checkpoint files shared by the CNN and SimCLR trainers, weights digest, torch threads.
- ssl: SimCLR self-supervised pretraining of the ResNet.
- heldout: the held-out evaluation of a trained pipeline (exact and ellipse contours).
- bundle_export: the trained bundle (pipeline, cutoffs, OOD reference, manifest, files).
- model_card: model_card.md of a trained bundle.
"""
