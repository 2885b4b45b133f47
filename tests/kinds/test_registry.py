"""The kind registry: built-in kinds, extra kind modules, and the closed vocabulary of outputs."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
from pydantic import ValidationError

from kinds import OUTPUT_TYPES, BUILTIN, KindInfo, Output, UnknownKind, all_kinds, get_kind, load, parse_spec
from tests.kinds.throwaway import isolate_registry, write_kind, write_module


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch) -> None:
    isolate_registry(monkeypatch)


def test_builtin_kinds_are_listed_in_their_list_order() -> None:
    names = list(all_kinds())
    assert names == [importlib.import_module(m).KIND.name for m in BUILTIN]
    assert names[:4] == ["debug.sleep", "video.shots", "batch.chat", "batch.images"]


def test_unknown_kind_names_the_known_ones() -> None:
    with pytest.raises(UnknownKind) as err:
        get_kind("video.nope")
    assert str(err.value).startswith("unknown job kind 'video.nope'; known kinds: batch.chat, batch.images, debug.sleep")
    with pytest.raises(UnknownKind):
        parse_spec("video.nope", {})


def test_specs_are_strict() -> None:
    assert parse_spec("debug.sleep", {"items": 3}).total_items() == 3
    with pytest.raises(ValidationError, match="itmes"):
        parse_spec("debug.sleep", {"itmes": 3})
    with pytest.raises(ValidationError, match="either asset_ids or project_id"):
        parse_spec("video.shots", {})


def test_outputs_come_from_the_closed_vocabulary() -> None:
    for kind in all_kinds().values():
        for name, out in kind.outputs.items():
            assert out.type in OUTPUT_TYPES and out.per_item in ("one", "many"), (kind.name, name)
    shots = get_kind("video.shots")
    assert shots.output("shots") == Output("video_shots", "one", shots.outputs["shots"].description)
    assert shots.output("keyframes").type == "image" and shots.output("keyframes").per_item == "many"
    images = get_kind("batch.images")
    assert {n: (o.type, o.per_item) for n, o in images.outputs.items()} == {
        "images": ("image", "many"), "output_file": ("jsonl", "one"), "error_file": ("jsonl", "one"),
    }
    assert get_kind("debug.sleep").outputs == {}
    with pytest.raises(KeyError, match="job kind 'video.shots' has no output 'thumbs'; it has: shots, keyframes"):
        shots.output("thumbs")
    with pytest.raises(ValueError, match="output type 'gif' is not one of video, video_shots"):
        Output("gif")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="per_item"):
        Output("image", "several")  # type: ignore[arg-type]


def test_an_extra_kind_module_joins_the_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = write_kind(tmp_path, monkeypatch, "test.echo")
    with pytest.raises(UnknownKind):
        get_kind("test.echo")  # not before it is named
    load([module])
    load([module])  # idempotent: a second start of the same process
    info = get_kind("test.echo")
    assert list(all_kinds())[-1] == "test.echo"
    assert info.description == "Echoes its items: a kind that exists only in a test."
    assert info.spec.kind == "test.echo" and parse_spec("test.echo", {"items": 4}).total_items() == 4
    assert info.output("clip").type == "video"


def test_a_kind_defined_twice_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    builtin = get_kind("debug.sleep")
    module = write_kind(tmp_path, monkeypatch, "debug.sleep")
    with pytest.raises(ValueError, match=rf"job kind 'debug.sleep' is defined twice \({module}\)"):
        load([module])
    assert get_kind("debug.sleep") is builtin


def test_a_module_without_a_kind_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = write_module(tmp_path, monkeypatch, "KIND = 'test.echo'\n")
    with pytest.raises(TypeError, match=rf"{module}.KIND is not a KindInfo"):
        load([module])
    with pytest.raises(ModuleNotFoundError):
        load(["no_such_kind_module"])
    assert isinstance(get_kind("debug.sleep"), KindInfo) and "test.echo" not in all_kinds()
