"""/v1/chat/completions and /v1/completions, relayed to Ray Serve LLM (vLLM)."""
