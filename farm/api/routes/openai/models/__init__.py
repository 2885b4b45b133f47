"""/v1/models: the models this farm serves."""
