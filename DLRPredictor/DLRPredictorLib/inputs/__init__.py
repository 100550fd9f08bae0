"""Reading cases: images, lesion masks and contour variants, crops, resampling, cohort CSVs, samples.

- images: reading image files and arrays into an ImageVolume (spacing, colour marks, checks).
- lesion: lesion masks (read_mask, validate_mask, mask_from_array), the representative slice.
- contours: contour variants of a 2D mask (erode, dilate, moment-matched ellipse, jitter).
- crops: the CNN's lesion crop (CropSpec, lesion_crop, crop_from_arrays, zscore), numpy only.
- resample: bilinear resizing in numpy (resize_bilinear).
- cohort_csv: the labelled cohort CSV (manifest) reader.
- spacing: the pixel-size rule (parse_spacing_mm) of cohort CSVs and the array API.
- phantom: the bundled synthetic phantom case.
- synthetic_cohort: synthetic labelled cohorts for tests and demos.
"""
