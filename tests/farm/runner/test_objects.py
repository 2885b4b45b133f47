"""The workers' object handle: survives pickling, reads S3 objects through one node-local copy."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from farm.runner.objects import FolderObjects, StoreObjects
from farm.settings import S3Settings, Settings, StorageSettings
from farm.storage import open_store
from tests.fixtures.s3 import S3Server, unique_bucket


def test_s3_objects_are_read_from_a_node_local_copy(s3_server: S3Server, tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, storage=StorageSettings(backend="s3"), s3=S3Settings(
        endpoint=s3_server.endpoint, access_key=s3_server.access_key, secret_key=s3_server.secret_key,
        bucket=unique_bucket(), region=s3_server.region))
    open_store(settings).ensure_ready()
    handle = pickle.loads(pickle.dumps(StoreObjects(settings, "org_1", "proj_1")))
    stored = handle.put("clip.txt", b"hello clip\n")
    assert stored.object_key and stored.object_key.startswith("orgs/org_1/projects/proj_1/assets/asset_")
    path = handle.local_path(stored.object_key)
    assert path.read_bytes() == b"hello clip\n" and path.is_relative_to(tmp_path / "cache" / "media")
    assert handle.local_path(stored.object_key) == path and b"".join(handle.get(stored.object_key)) == b"hello clip\n"
    handle.delete(stored.object_key)
    with pytest.raises(FileNotFoundError):
        handle.local_path(stored.object_key + "x")


def test_a_folder_handle_keeps_output_names(tmp_path: Path) -> None:
    handle = FolderObjects(tmp_path / "out")
    stored = handle.put("a/b.jpg", b"\xff\xd8\xff\xe0 jpeg")
    assert stored.path == str(tmp_path / "out" / "a" / "b.jpg") and stored.content_type == "image/jpeg" and stored.size == 9
    assert handle.local_path("a/b.jpg").read_bytes() == b"\xff\xd8\xff\xe0 jpeg"
    handle.delete("a/b.jpg")
    with pytest.raises(FileNotFoundError):
        handle.local_path("a/b.jpg")
