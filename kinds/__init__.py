"""Job kinds in one neutral home: specs, typed outputs, the registry.

Imported by the control plane (validation at submit, the kinds listing) and
by pipelines (their spec type) alike; pulls in nothing but pydantic.
"""

from kinds.base import OUTPUT_TYPES, JobSpec, KindInfo, Output, OutputType
from kinds.registry import BUILTIN, UnknownKind, all_kinds, get_kind, load, parse_spec

__all__ = [
    "BUILTIN", "OUTPUT_TYPES", "JobSpec", "KindInfo", "Output", "OutputType", "UnknownKind", "all_kinds", "get_kind",
    "load", "parse_spec",
]
