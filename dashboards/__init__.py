"""Grafana dashboards as code (generated JSON lives in deploy/grafana/)."""
