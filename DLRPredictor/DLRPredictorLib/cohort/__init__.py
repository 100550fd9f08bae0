"""Cohorts: a cohort CSV (the CLI's MANIFEST.csv) in, a results CSV out.

- ``rows``: cohort CSV rows -> jobs -> predictions -> results CSV rows;
- ``journal``: the append-only journal that makes a run resumable, and when a row is reused;
- ``fingerprint``: a row's input fingerprint (file bytes, clinical values, bundle content, options);
- ``pool``: the worker processes (fork server, crash-surviving pool, stopped at once on Ctrl-C);
- ``results_file``: the results CSV's place checked before a run, locked during it;
- ``worker_server``: readies the fork server (bundle loaded once, GC frozen), ties workers to it;
- ``batch``: a whole run: predict_cohort, predict_cohort_in_process, evaluate_cohort;
- ``evaluation_ledger``: evaluate's entry in the held-out ledger of the scored test set;
- ``dask_runner``: the same run on a Dask cluster (``--scheduler``): connect, ship the bundle, tasks;
- ``dask_worker``: the worker side of it: the shipped bundle loaded once per worker, the case task.
"""
