"""The OpenAI protocol as the farm speaks it: request, response and batch line models.

One package, used by the front door (``farm.api.routes.openai``), by batch
validation (``farm.batches.requests``: each line's body is checked with the
online route's own request model) and by the batch pipelines (typed output
and error lines). Plain pydantic: no web framework, no database.
"""
