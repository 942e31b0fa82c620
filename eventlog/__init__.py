"""The event log's shared rules, pure Python: its keys, the time inside its timeuuids, and what each event
counts in the counter tables. The event writer (webapp/storage/events.py), the serving path and the Spark
jobs (counter audit, city priors, history import) import them from here, so each rule is written once."""
