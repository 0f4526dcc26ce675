"""sha256 of a file: one definition (edgekd.fsio.sha256_file), re-exported by manifest and the TensorRT runtime."""

from __future__ import annotations

import hashlib
from pathlib import Path

from edgekd.fsio import sha256_file


def test_sha256_file_reads_in_chunks_and_matches_hashlib(tmp_path: Path) -> None:
    data = bytes(range(256)) * 5000  # 1.28 MB: more than one 1 MiB chunk
    path = tmp_path / "model.bin"
    path.write_bytes(data)
    want = hashlib.sha256(data).hexdigest()
    assert sha256_file(path) == want
    assert sha256_file(str(path), chunk=4096) == want
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert sha256_file(empty) == hashlib.sha256(b"").hexdigest()


def test_every_caller_uses_the_one_definition() -> None:
    import edgekd.manifest
    import edgekd.runtimes.tensorrt

    assert edgekd.manifest.sha256_file is sha256_file
    assert edgekd.runtimes.tensorrt.sha256_file is sha256_file


def test_file_problems_names_missing_and_changed_files(tmp_path):
    from edgekd.fsio import file_problems

    (tmp_path / "a.bin").write_bytes(b"a")
    (tmp_path / "b.bin").write_bytes(b"b")
    expected = [("a.bin", sha256_file(tmp_path / "a.bin")), ("b.bin", sha256_file(tmp_path / "a.bin")),
                ("c.bin", "0" * 64)]
    assert file_problems(tmp_path, expected) == [("b.bin", "changed"), ("c.bin", "missing")]
