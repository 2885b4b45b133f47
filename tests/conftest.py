"""Session-wide fixtures: real PostgreSQL, real S3-protocol server, real Ray.

Each heavy service starts once per test session; see tests/fixtures/.
"""

pytest_plugins = [
    "tests.fixtures.postgres",
    "tests.fixtures.s3",
    "tests.fixtures.ray_cluster",
    "tests.fixtures.models",
    "tests.fixtures.serve_apps",
]
