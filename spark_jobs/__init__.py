"""PySpark jobs of Banner Bandit: city priors from the event log, and the import of historical events.

Run them as modules from the repository root (``python -m spark_jobs.city_priors``) or with spark-submit;
see docs/operations.md for the options, the schedule and running against a cluster.
"""
