"""Files generated from the catalog: docker-compose.yml, the Prometheus scrape configuration, the Grafana dashboards."""
