"""Foundations every layer may use: errors, case types, numeric helpers, compatibility, thread limits.

- errors: the typed exceptions (DLRError and its subclasses).
- case: the data types passed between the layers (image volume, lesion slice).
- numeric: expit, logit and softmax in plain numpy.
- compat: Python 3.9 stand-ins for newer built-ins.
- thread_limits: process-wide thread limits held while a prediction needs them.
- version: the package version.
- labels: validate_labels, the one check of 0/1 label arrays; code_label, the one rule reading label texts.
- case_ids: which texts may be a case id (case_id_problem) and its scene file name (case_file_stem).
- interrupts: Interrupted (Ctrl-C, SIGTERM) with its exit status and progress; SIGTERM raises it.
- json_values: to_json_value, plain JSON values from numpy, pandas and Python objects.
- outputs: the checks that no output path overwrites, or replaces a folder holding, an input, and
  that an output folder can be written.
- executor: MapFunction, the ordered map that training's independent work is handed to (here, or a
  cluster's: ``train --scheduler``).
"""
