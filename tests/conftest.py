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


def pytest_collection_modifyitems(items: list) -> None:  # type: ignore[type-arg]
    """Modules that use the session's Serve applications run last, whole and in their own order.

    Once deployed, the Serve applications (five replicas, the controller,
    the proxy) stay up to the end of the session and take a steady share of
    the two cores; deployed late, they do not slow every Ray test after them.
    """
    uses_serve = {item.module.__name__ for item in items if "serve_apps" in getattr(item, "fixturenames", ())}
    items.sort(key=lambda item: item.module.__name__ in uses_serve)  # stable: the order within each group stays
