"""Media stages any video kind reuses: probe, decode and encode frame ranges with their audio,
keyframe images, contact sheets, node-local media access, and synthetic test videos."""
