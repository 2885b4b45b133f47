"""OpenAI-compatible Files and Batches: views over assets and `batch.*` jobs."""
