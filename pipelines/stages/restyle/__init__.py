"""Stages of `video.restyle`: plan chunks within shots, decode them small, render them on the diffusion engine, encode, join."""
