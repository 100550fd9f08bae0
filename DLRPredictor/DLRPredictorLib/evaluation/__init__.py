"""Statistics of binary predictions (AUC, DeLong, cutoff metrics, calibration, decision curves) and reports.

- validation: checks of scores and probabilities (labels: base.labels.validate_labels).
- auc: AUC with DeLong standard error, paired DeLong tests, ROC curve points.
- clustered_auc: Obuchowski's clustered AUC (several cases per patient) and its paired tests.
- bootstrap: patient-level (cluster) bootstrap percentile intervals for AUC, proportions, net benefit.
- multiplicity: Holm-adjusted p-values.
- reclassification: NRI (categorical and continuous) and IDI of a new model over an old one.
- reader: the readers (BI-RADS) as comparator: AUC, tests, NRI/IDI, the BI-RADS >= 4 policy.
- sample_size: warnings when a set is too small for an interval.
- cutoff_metrics: Wilson intervals, metrics at a cutoff, Youden's cutoff.
- calibration: calibration curve, recalibration slope and intercept, Brier score, Hosmer-Lemeshow.
- decision_curve: net benefit of the model, of treating all and of treating none.
- report: evaluate_scores and write_report, the report's public entry points.
- report_intervals: the report's clustered and bootstrap intervals, Holm p-values and warnings.
- report_tables: the report's CSV tables.
- report_figures: the report's PNG figures (matplotlib, imported when drawing).
- report_html: the report's index.html.
- report_csv: report_from_predictions_csv, a report from a CSV of labels and scores.
- summary: compact per-score summaries (flatten_score) for the manifest and the model card.
- multiclass: metrics of a K-class endpoint (one-vs-rest AUCs, macro/micro AUC, confusion matrix,
  per-class proportions and calibration, multinomial Brier).
- multiclass_report, multiclass_figures: the K-class report's page, tables and figures.
- multiclass_csv: a K-class report from a CSV of probability:<class> columns and class names.
"""
