"""Stages of `video.caption`: frames sampled per shot, captions written as JSON, SRT and WebVTT."""
