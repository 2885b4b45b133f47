"""finish_reason from the generated tokens and text: a stop string or end-of-sequence token is `stop`, a limit is `length`."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.stages.models.finish_reason import eos_token_ids, finish, stop_strings

EOS = frozenset({925})


@pytest.mark.parametrize(
    ("tokens", "text", "stop", "expected"),
    [
        ([439, 677, 925], " afterours", [], ("stop", " afterours")),  # the model's end-of-sequence token
        ([439, 677, 921, 925], " afterours works", [], ("stop", " afterours works")),  # ... even exactly at max_tokens
        ([439], " afte", ["e"], ("stop", " aft")),  # a stop string, kept by the engine, cut here
        ([439, 677, 921, 359], " afterours worksod", ["od"], ("stop", " afterours works")),  # ... matched on the last token
        ([439, 677], " afterou", ["x", "ou", "u"], ("stop", " after")),  # the first stop string that ends the text
        ([439, 677, 921, 359], " afterours worksod", ["zz"], ("length", " afterours worksod")),  # cut by max_tokens
        ([47, 47, 47, 47], "PPPP", [], ("length", "PPPP")),
        ([439, 677], " afterours", [], ("stop", " afterours")),  # ended early on a token the files did not name
    ],
)
def test_finish(tokens: list[int], text: str, stop: list[str], expected: tuple[str, str]) -> None:
    assert finish(tokens, text, max_tokens=4, stop=stop, eos_token_ids=EOS) == expected


def test_the_context_length_is_a_limit_too() -> None:
    assert finish([5, 6], "ab", max_tokens=16, stop=[], eos_token_ids=EOS, prompt_tokens=1022, max_model_len=1024) == ("length", "ab")
    assert finish([5, 6], "ab", max_tokens=16, stop=[], eos_token_ids=EOS, prompt_tokens=1000, max_model_len=1024) == ("stop", "ab")


def test_stop_strings_take_one_or_many() -> None:
    assert stop_strings(None) == [] and stop_strings("e") == ["e"] and stop_strings(["a", "", "b"]) == ["a", "b"]


def test_eos_ids_come_from_the_model_files(demo_models: dict[str, Path], tmp_path: Path) -> None:
    assert eos_token_ids(str(demo_models["tiny-llama"])) == {925}
    (tmp_path / "generation_config.json").write_text('{"eos_token_id": [128001, 128009]}')
    (tmp_path / "config.json").write_text('{"eos_token_id": 128001}')
    assert eos_token_ids(str(tmp_path)) == {128001, 128009}
    assert eos_token_ids(str(tmp_path / "missing")) == frozenset()
