"""Cohorts: the batch pool, its worker server, results rows and journal."""
