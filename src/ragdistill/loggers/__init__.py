"""Experiment loggers and the run labels the dashboards group runs by; ``conf/logger/`` selects them."""
