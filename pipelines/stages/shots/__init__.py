"""The shot-detection domain: frame features, detectors, the detection path, shot rendering,
and shot lists as files (JSON, CSV, EDL)."""
