"""The pipeline's agents and timers, found by the app's autodiscovery."""
