"""Storage: the Cassandra session and every CQL statement, the event writer and its spool."""
