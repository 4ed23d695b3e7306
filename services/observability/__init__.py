"""Observability: the Prometheus configuration and the Grafana dashboards, generated from one source."""
