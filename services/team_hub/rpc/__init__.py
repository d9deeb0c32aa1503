"""Team hub's RPCs, one module per resource; ``services.team_hub.servicer`` combines them."""
