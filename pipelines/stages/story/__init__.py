"""Stages of `story.animatic`: shot lists from an LLM (schema, parsing, the batched pass), keyframes from diffusion,
camera motion and subtitles, and the assembly of an animatic."""
