"""/v1/images/generations and /v1/images/edits, rendered by the diffusion deployments."""
