"""/v1/usage: what an org's keys and projects used, over a time range."""
