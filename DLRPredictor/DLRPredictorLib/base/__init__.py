"""Foundations every layer may use: errors, case types, numeric helpers, compatibility, thread limits."""
