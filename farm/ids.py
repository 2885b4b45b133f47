"""Public identifiers: a type prefix, then a time-ordered random body.

Ordering by id is ordering by creation, which makes cursor pagination a
plain ``id < cursor`` comparison on every database.
"""

from __future__ import annotations

import secrets
import time


def new_id(prefix: str) -> str:
    millis = time.time_ns() // 1_000_000
    return f"{prefix}_{millis:012x}{secrets.token_hex(8)}"
