"""Evaluation of what the service earns: the holdout's lift (lift.py) and off-policy estimates of candidate
policies from the logged propensities (estimators.py, candidates.py). Pure: numpy, pandas, scipy and
scikit-learn only, no Flask, Cassandra or Spark, so the API, the Spark job, the simulator and the benchmarks
share it."""
