"""Our HTTP endpoints on the Faust web server, found by the app's autodiscovery."""
