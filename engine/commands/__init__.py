"""CLI commands, one module per topic; each is registered on the group in ml_connector.cli."""
