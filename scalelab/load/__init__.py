"""The load: one request mix, one simulated user class, the live engine (Locust in its own process) and its control."""
