"""The load engine: Locust, running in its own process, driven through its web API."""
