"""Prometheus metric families. Each collector is small: `collect()` builds fresh
families from what it was given, and `describe()` names them without calling
anything, so registering a collector costs nothing."""
