"""Bundles are data, never directions: paths in bundle.json and members of a bundle .tar.gz are checked
before anything is read or written (no run needed)."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest

from edgekd.bundle.schema import BundleFile
from edgekd.bundle.unpack import safe_extract
from edgekd.bundle.verify import bundle_path, unsafe_path
from edgekd.errors import UsageError
from tests.tarfiles import archive, member


@pytest.mark.parametrize("path,why", [("/etc/passwd", "absolute"), ("../x.onnx", "leaves the bundle"),
                                      ("models/../../x", "leaves the bundle"), ("C:/x.onnx", "absolute"),
                                      ("models\\x.onnx", "forward slashes"), ("", "non-empty")])
def test_bundle_json_paths_must_stay_inside(path: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        BundleFile(path=path, sha256="0" * 64, size_bytes=1)
    assert BundleFile(path="models/student_int8.onnx", sha256="0" * 64, size_bytes=1).path == "models/student_int8.onnx"


def test_symlinks_in_a_bundle_are_never_followed(tmp_path: Path) -> None:
    bundle, outside = tmp_path / "b", tmp_path / "secret.txt"
    (bundle / "models").mkdir(parents=True)
    outside.write_text("secret")
    (bundle / "models" / "a.onnx").symlink_to(outside)
    (bundle / "linked").symlink_to(tmp_path)
    (bundle / "models" / "real.onnx").write_text("x")
    assert "symbolic link" in unsafe_path(bundle, "models/a.onnx")
    assert "symbolic link" in unsafe_path(bundle, "linked/secret.txt")  # a linked folder on the way
    assert unsafe_path(bundle, "models/real.onnx") is None
    with pytest.raises(UsageError, match="symbolic link"):
        bundle_path(bundle, "models/a.onnx")
    with pytest.raises(UsageError, match="missing"):
        bundle_path(bundle, "models/none.onnx")


def _archive(tmp: Path, *members: tuple[tarfile.TarInfo, bytes | None]) -> Path:
    return archive(tmp / "a.tar.gz", *members)


@pytest.mark.parametrize("with_filter", [True, False], ids=["python-with-data-filter", "python-without-filters"])
@pytest.mark.parametrize("members,why", [
    ([(member("b/ok.txt"), b"ok"), (member("b/../../evil.txt"), b"evil")], "'..'"),
    ([(member("/tmp/evil.txt"), b"evil")], "absolute name"),
    ([(member("b", tarfile.DIRTYPE), None), (member("b/l", tarfile.SYMTYPE, "/etc/passwd"), None)], "symbolic link"),
    ([(member("b", tarfile.DIRTYPE), None), (member("b/h", tarfile.LNKTYPE, "../../x"), None)], "hard link"),
    ([(member("b/dev", tarfile.CHRTYPE), None)], "device"),
    ([(member("b/fifo", tarfile.FIFOTYPE), None)], "FIFO"),
], ids=["dotdot", "absolute", "absolute-symlink", "hardlink-outside", "device", "fifo"])
def test_unsafe_members_refused_and_nothing_extracted(tmp_path: Path, monkeypatch, members, why, with_filter) -> None:
    if not with_filter:  # Python < 3.11.4 / 3.10.12: the member checks alone must hold
        monkeypatch.delattr(tarfile, "data_filter", raising=False)
    archive = _archive(tmp_path, *members)
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(UsageError, match=why):
        safe_extract(archive, dest)
    assert list(dest.iterdir()) == [] and not (tmp_path / "evil.txt").exists()


def test_not_gzip_or_truncated_is_one_usage_error(tmp_path: Path) -> None:
    (tmp_path / "x.tar.gz").write_text("hello")
    with pytest.raises(UsageError, match="not a readable bundle .tar.gz"):
        safe_extract(tmp_path / "x.tar.gz", tmp_path)
    good = _archive(tmp_path, (member("b/ok.txt"), b"ok" * 5000))
    (tmp_path / "t.tar.gz").write_bytes(good.read_bytes()[:60])
    with pytest.raises(UsageError, match="not a readable bundle .tar.gz"):
        safe_extract(tmp_path / "t.tar.gz", tmp_path / "out")


def test_plain_bundle_archive_extracts(tmp_path: Path) -> None:
    archive = _archive(tmp_path, (member("b", tarfile.DIRTYPE), None), (member("b/bundle.json"), b"{}"))
    safe_extract(archive, tmp_path / "out")
    assert (tmp_path / "out" / "b" / "bundle.json").read_text() == "{}"
