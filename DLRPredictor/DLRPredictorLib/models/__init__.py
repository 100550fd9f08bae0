"""Fitted steps: feature selection, classifiers, signatures, fusion, clinical model, nomogram, persistence.

- ``selection``: FeatureSelector (univariate test, correlation pruning, LASSO) and its SelectionConfig.
- ``classifiers``: the classifiers (CLASSIFIERS), grid search, positive-class probability and logit.
- ``signatures``: Signature (selection + tuned classifier), early_fusion, DeepFeatureReducer (PCA).
- ``fusion``: out-of-fold probabilities, EnsembleFusion and StackingFusion.
- ``clinical_variables``: ClinicalVariable, the missing-value rule (is_missing), encode_clinical.
- ``clinical_logistic``: univariable / multivariable odds-ratio tables, select_predictors.
- ``combined``: CombinedModel (DLR score + clinical predictors).
- ``nomogram``: the nomogram of the combined model.
- ``persistence``: fitted estimators <-> JSON + numeric arrays, rebuilt in numpy (no pickle).
"""
