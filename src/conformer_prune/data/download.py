"""Download LibriSpeech: archives from an openslr mirror with resume and MD5 verification against the published
checksums, then extracted into the LibriSpeech layout (:mod:`conformer_prune.data.librispeech`); complete subsets
are skipped (``scripts/prepare_librispeech.py``)."""

from __future__ import annotations

import hashlib
import logging
import shutil
import tarfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from conformer_prune.data.librispeech import DataError, expand_subsets

log = logging.getLogger(__name__)

OPENSLR_BASE_URL = "https://www.openslr.org/resources/12"

LIBRISPEECH_MD5: dict[str, str] = {
    "train-clean-100": "2a93770f6d5c6c964bc36631d331a522",
    "train-clean-360": "c0e676e450a7ff2f54aeade5171606fa",
    "train-other-500": "d1a0fd59409feb2c614ce4d30c387708",
    "dev-clean": "42e2234ba48799c1f50f24a7926300a1",
    "dev-other": "c8d0bcc9cca99d4f8b62fcc847357931",
    "test-clean": "32fa31d27d2e1cad72775fee3f4849a9",
    "test-other": "fb5a50374b501bb3bac4815ee91d3135",
}
"""MD5 of ``<subset>.tar.gz`` as published in openslr.org/resources/12/md5sum.txt."""


def _md5(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.md5()  # publisher-provided checksums are MD5
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _open_from(url: str, offset: int, timeout_s: float) -> tuple[Any, int]:
    """Open ``url`` at byte ``offset``; returns ``(stream, offset actually used)``."""
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme == "file":
        fh = Path(urllib.request.url2pathname(parsed.path)).open("rb")  # noqa: SIM115 - the caller closes it
        fh.seek(offset)
        return fh, offset
    request = urllib.request.Request(url, headers={"Range": f"bytes={offset}-"} if offset else {})
    response = urllib.request.urlopen(request, timeout=timeout_s)  # noqa: S310 - http(s)/file from config
    if offset and getattr(response, "status", 200) != 206:
        return response, 0  # the server ignored the range: start over
    return response, offset


def download_file(url: str, dest: Path, md5: str | None, *, timeout_s: float = 60.0, retries: int = 1) -> Path:
    """Download ``url`` to ``dest`` with resume (``dest.part``) and MD5 verification.

    A partial download is resumed; a finished one whose MD5 does not match is deleted and
    downloaded again from scratch, up to ``retries`` times.

    Raises:
        ValueError: if the MD5 still does not match, or the URL cannot be fetched.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.is_file() and (md5 is None or _md5(dest) == md5):
        return dest
    dest.unlink(missing_ok=True)
    part = dest.with_name(dest.name + ".part")
    for attempt in range(retries + 1):
        offset = part.stat().st_size if part.is_file() else 0
        try:
            stream, offset = _open_from(url, offset, timeout_s)
        except (OSError, urllib.error.URLError) as err:
            raise DataError(
                f"cannot fetch {url} ({err}). Fix: check the network or point base_url at a reachable mirror"
            ) from err
        if offset:
            log.info("resuming %s at byte %d", dest.name, offset)
        with stream, part.open("ab" if offset else "wb") as out:
            shutil.copyfileobj(stream, out, length=1 << 20)
        actual = _md5(part) if md5 is not None else None
        if actual == md5:
            part.replace(dest)
            return dest
        log.warning("%s: MD5 %s, expected %s (attempt %d): downloading again", dest.name, actual, md5, attempt + 1)
        part.unlink()
    raise DataError(
        f"{url}: MD5 mismatch after {retries + 1} attempts (expected {md5}). Fix: the mirror at base_url serves "
        "a corrupt or different archive; use another base_url, or correct the checksums table if it is wrong"
    )


def _complete_marker(base: Path, subset: str) -> Path:
    return base / f".{subset}.complete"


def download_subsets(
    root: str | Path,
    subsets: str | Sequence[str],
    *,
    base_url: str = OPENSLR_BASE_URL,
    checksums: Mapping[str, str] | None = None,
    keep_archives: bool = False,
    timeout_s: float = 60.0,
    retries: int = 1,
) -> Path:
    """Download and extract LibriSpeech subsets into ``root/LibriSpeech`` (complete ones are skipped).

    Args:
        root: directory that receives ``LibriSpeech/`` (archives go to ``root/downloads``).
        subsets: official names or aliases (``train-960``).
        base_url: mirror holding ``<subset>.tar.gz`` (``file://`` URLs work, for tests and local mirrors).
        checksums: ``subset -> MD5`` (default: the published ``LIBRISPEECH_MD5``).
        keep_archives: keep the ``.tar.gz`` after a verified extraction.
        timeout_s: network timeout per request.
        retries: re-downloads after an MD5 mismatch.

    Returns:
        The ``LibriSpeech`` directory.
    """
    root = Path(root).expanduser()
    checksums = dict(LIBRISPEECH_MD5 if checksums is None else checksums)
    names = expand_subsets(subsets)
    unknown = [n for n in names if n not in checksums]
    if unknown:
        raise DataError(
            f"no checksum for subset(s) {unknown}: known are {sorted(checksums)}. Fix: use official names or add "
            "them to the checksums table"
        )
    base = root / "LibriSpeech"
    for name in names:
        marker = _complete_marker(base, name)
        if marker.is_file() and (base / name).is_dir():
            log.info("%s: already complete, skipped", name)
            continue
        archive = root / "downloads" / f"{name}.tar.gz"
        url = f"{base_url.rstrip('/')}/{name}.tar.gz"
        log.info("%s: downloading %s", name, url)
        download_file(url, archive, checksums[name], timeout_s=timeout_s, retries=retries)
        log.info("%s: extracting %s", name, archive)
        if (base / name).exists():
            shutil.rmtree(base / name)  # an earlier extraction stopped halfway
        try:
            with tarfile.open(archive, "r:gz") as tar:
                tar.extractall(root, filter="data")
        except (tarfile.TarError, OSError, EOFError) as err:
            raise DataError(f"{archive}: cannot extract ({err}). Fix: delete it and run again") from err
        if not (base / name).is_dir():
            raise DataError(f"{archive} holds no LibriSpeech/{name}/ directory: is base_url the right mirror?")
        marker.write_text(checksums[name] + "\n")
        if not keep_archives:
            archive.unlink()
    return base


def prepare_from_config(cfg: Mapping[str, Any]) -> Path:
    """Entry point of ``scripts/prepare_librispeech.py`` (keys of ``conf/prepare_librispeech.yaml``)."""
    return download_subsets(
        cfg["root"],
        list(cfg["subsets"]),
        base_url=str(cfg.get("base_url", OPENSLR_BASE_URL)),
        checksums=dict(cfg["checksums"]) if cfg.get("checksums") else None,
        keep_archives=bool(cfg.get("keep_archives", False)),
        timeout_s=float(cfg.get("timeout_s", 60.0)),
        retries=int(cfg.get("retries", 1)),
    )
