"""The speech engines: eSpeak NG through ctypes (in freshly forked processes: it keeps state between
utterances) and the Debian ``flite`` voices when ``flite`` is on PATH; their versions."""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import traceback
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import soundfile as sf

log = logging.getLogger(__name__)


def flite_available() -> bool:
    return shutil.which("flite") is not None


def resolve_engines(engines: str | Sequence[str]) -> list[str]:
    """``"auto"`` -> eSpeak plus flite when installed; otherwise check the list."""
    if engines == "auto":
        return ["espeak"] + (["flite"] if flite_available() else [])
    names = list(engines)
    if "flite" in names and not flite_available():
        raise ValueError("corpus.engines names flite, but flite is not on PATH: apt-get install flite, or use 'auto'")
    return names


class _Espeak:
    """eSpeak NG through ctypes (``espeakng-loader``). One instance per process."""

    _instance: _Espeak | None = None

    def __init__(self) -> None:
        try:
            import espeakng_loader
        except ImportError as err:  # pragma: no cover - it is a declared dependency
            raise ValueError("the embedded corpus needs the pip package espeakng-loader: pip install it") from err
        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        callback_type = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)
        self._chunks: list[np.ndarray] = []

        def _collect(wav: Any, num: int, _events: Any) -> int:
            if num > 0:
                self._chunks.append(np.ctypeslib.as_array(wav, shape=(num,)).copy())
            return 0

        self._callback = callback_type(_collect)  # keep a reference: ctypes does not
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Synth.argtypes = [
            ctypes.c_char_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]
        lib.espeak_Info.restype = ctypes.c_char_p
        lib.espeak_Info.argtypes = [ctypes.c_void_p]
        # AUDIO_OUTPUT_SYNCHRONOUS = 2; the data path must be passed here (not via InitializePath).
        self.sample_rate = lib.espeak_Initialize(2, 0, espeakng_loader.get_data_path().encode(), 0)
        if self.sample_rate <= 0:
            raise RuntimeError("espeak_Initialize failed")
        lib.espeak_SetSynthCallback(self._callback)
        self._lib = lib

    @classmethod
    def get(cls) -> _Espeak:
        if cls._instance is None:
            cls._instance = cls()
        return cls._instance

    def version(self) -> str:
        return self._lib.espeak_Info(None).decode()

    def synthesize(self, text: str, voice: str, rate: float, pitch: int, pitch_range: int) -> tuple[np.ndarray, int]:
        if self._lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise ValueError(f"eSpeak has no voice {voice!r}")
        for key, value in ((1, rate), (3, pitch), (4, pitch_range)):  # espeakRATE, espeakPITCH, espeakRANGE
            self._lib.espeak_SetParameter(key, int(round(value)), 0)
        self._chunks.clear()
        data = text.encode()
        self._lib.espeak_Synth(data, len(data) + 1, 0, 0, 0, 1, None, None)  # position 0, espeakCHARS_UTF8
        self._lib.espeak_Synchronize()
        if not self._chunks:
            raise RuntimeError(f"eSpeak produced no audio for {text[:40]!r}")
        return np.concatenate(self._chunks).astype(np.float32) / 32768.0, self.sample_rate


def _flite_synthesize(text: str, voice: str, stretch: float, workdir: str) -> tuple[np.ndarray, int]:
    wav = os.path.join(workdir, "flite.wav")
    subprocess.run(
        ["flite", "-voice", voice, "--setf", f"duration_stretch={stretch:.4f}", "-t", text, "-o", wav],
        check=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    audio, sr = sf.read(wav, dtype="float32")
    return audio, int(sr)


def engine_versions(engines: Iterable[str]) -> dict[str, str]:
    """Version string of each engine (recorded in the manifest and the corpus id)."""
    out: dict[str, str] = {}
    for engine in engines:
        if engine == "espeak":
            out[engine] = _run_forked(_espeak_version)
        elif engine == "flite":
            res = subprocess.run(["flite", "--version"], capture_output=True, text=True, check=False)
            match = re.search(r"flite-([\w.\-]+)", res.stdout + res.stderr)
            out[engine] = match.group(1) if match else "unknown"
    return out


def _espeak_version() -> str:
    return _Espeak.get().version()


def _die_with_parent(parent: int) -> None:
    """Have the kernel kill this process when its parent dies (Linux), so no worker outlives a Ctrl-C."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def _run_forked(fn: Callable[..., Any], *args: Any) -> Any:
    """Run ``fn(*args)`` in a forked child (fresh engine state); its result must be JSON-able.

    The child never returns into the caller's code (it always ends in ``os._exit``, even when the
    parent has gone and the result cannot be written), dies with its parent, and is killed and
    reaped when the parent is interrupted while waiting for it.
    """
    if not hasattr(os, "fork"):  # pragma: no cover - no fork: state may carry over (not byte-exact)
        return fn(*args)
    parent = os.getpid()
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        code = 1
        try:
            os.close(read_fd)
            _die_with_parent(parent)
            try:
                payload = json.dumps({"ok": fn(*args)}).encode()
                code = 0
            except BaseException:  # report anything to the parent
                payload = json.dumps({"error": traceback.format_exc()}).encode()
            with os.fdopen(write_fd, "wb") as fh:
                fh.write(payload)
        finally:
            os._exit(code)
    os.close(write_fd)
    try:
        with os.fdopen(read_fd, "rb") as fh:
            payload = fh.read()
        os.waitpid(pid, 0)
    except BaseException:  # Ctrl-C, or the pool terminating this worker: take the child down too
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(OSError):
            os.waitpid(pid, 0)
        raise
    result = json.loads(payload.decode() or '{"error": "the synthesis process died"}')
    if "error" in result:
        raise RuntimeError(f"synthesis failed:\n{result['error']}")
    return result["ok"]
