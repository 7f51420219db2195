"""prepare_librispeech against a local file:// mirror: MD5 check, resume, re-download, skip, errors."""

from __future__ import annotations

import hashlib
import shutil
import tarfile
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from conformer_prune.data.download import LIBRISPEECH_MD5, download_file, download_subsets, prepare_from_config
from conformer_prune.data.librispeech import read_subsets

CONF = Path(__file__).resolve().parents[3] / "conf"


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture
def mirror(tiny_librispeech: Path, tmp_path: Path) -> tuple[str, dict[str, str], Path]:
    """``<subset>.tar.gz`` archives of the tiny tree (LibriSpeech/<subset>/... inside, as on openslr)."""
    site = tmp_path / "mirror"
    site.mkdir()
    checksums = {}
    for subset in ("dev-clean", "test-clean"):
        archive = site / f"{subset}.tar.gz"
        with tarfile.open(archive, "w:gz") as tar:
            tar.add(tiny_librispeech / subset, arcname=f"LibriSpeech/{subset}")
        checksums[subset] = _md5(archive)
    return site.as_uri(), checksums, site


def test_downloads_verifies_extracts_and_skips_complete(mirror, tmp_path: Path) -> None:
    url, checksums, _ = mirror
    root = tmp_path / "data"
    base = download_subsets(root, ["dev-clean", "test-clean"], base_url=url, checksums=checksums)
    assert base == root / "LibriSpeech"
    assert len(read_subsets(root, ["dev-clean", "test-clean"], on_error="raise")) == 5
    assert not (root / "downloads" / "dev-clean.tar.gz").exists()  # keep_archives=False
    # complete subsets are skipped: even a now-broken mirror is not contacted
    download_subsets(root, ["dev-clean"], base_url=(tmp_path / "gone").as_uri(), checksums=checksums)


def test_corrupted_archive_on_the_mirror_is_rejected(mirror, tmp_path: Path) -> None:
    url, checksums, site = mirror
    archive = site / "dev-clean.tar.gz"
    archive.write_bytes(archive.read_bytes()[:-100] + b"x" * 100)
    with pytest.raises(ValueError, match=r"dev-clean.tar.gz: MD5 mismatch after 2 attempts.*Fix:.*base_url"):
        download_subsets(tmp_path / "data", ["dev-clean"], base_url=url, checksums=checksums)
    assert not (tmp_path / "data" / "LibriSpeech" / "dev-clean").exists()
    assert not list((tmp_path / "data" / "downloads").glob("*"))  # no corrupt leftovers


def test_corrupt_partial_download_is_redone_from_scratch(mirror, tmp_path: Path) -> None:
    url, checksums, site = mirror
    dest = tmp_path / "dl" / "dev-clean.tar.gz"
    dest.parent.mkdir()
    dest.with_name("dev-clean.tar.gz.part").write_bytes(b"garbage that does not match")
    download_file(f"{url}/dev-clean.tar.gz", dest, checksums["dev-clean"])
    assert _md5(dest) == checksums["dev-clean"] == _md5(site / "dev-clean.tar.gz")


def test_partial_download_is_resumed(mirror, tmp_path: Path) -> None:
    url, checksums, site = mirror
    full = (site / "test-clean.tar.gz").read_bytes()
    dest = tmp_path / "dl" / "test-clean.tar.gz"
    dest.parent.mkdir()
    dest.with_name("test-clean.tar.gz.part").write_bytes(full[: len(full) // 2])
    download_file(f"{url}/test-clean.tar.gz", dest, checksums["test-clean"], retries=0)  # no retry needed
    assert dest.read_bytes() == full


def test_half_extracted_subset_is_extracted_again(mirror, tmp_path: Path) -> None:
    url, checksums, _ = mirror
    root = tmp_path / "data"
    leftover = root / "LibriSpeech" / "dev-clean" / "84"
    leftover.mkdir(parents=True)
    (leftover / "stray.txt").write_text("from an interrupted run")
    download_subsets(root, ["dev-clean"], base_url=url, checksums=checksums, keep_archives=True)
    assert not (leftover / "stray.txt").exists()
    assert (root / "downloads" / "dev-clean.tar.gz").is_file()
    assert len(read_subsets(root, ["dev-clean"], on_error="raise")) == 3


def test_unreachable_mirror_and_unknown_subset(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot fetch .*base_url"):
        download_subsets(tmp_path, ["dev-clean"], base_url=(tmp_path / "none").as_uri())
    with pytest.raises(ValueError, match="no checksum for subset"):
        download_subsets(tmp_path, ["dev-cleen"])


def test_config_carries_the_published_checksums(mirror, tmp_path: Path) -> None:
    cfg = OmegaConf.load(CONF / "prepare_librispeech.yaml")
    assert dict(cfg.checksums) == LIBRISPEECH_MD5
    url, checksums, _ = mirror
    cfg.root = str(tmp_path / "data")
    cfg.subsets = ["test-clean"]
    cfg.base_url = url
    cfg.checksums = checksums  # tests override the table
    cfg.pop("defaults")
    cfg.pop("hydra")
    plain = OmegaConf.to_container(cfg, resolve=True)
    assert prepare_from_config(plain) == tmp_path / "data" / "LibriSpeech"
    shutil.rmtree(tmp_path / "data")
