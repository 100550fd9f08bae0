"""Reading cases: images, lesion masks and contour variants, resampling, cohort CSVs, samples."""
