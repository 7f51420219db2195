"""The type check of :func:`~conformer_prune.cli.validate.validate`: every key of every ``_target_`` node of
a composed config is an argument of the callable it configures, of the hinted type (``trainer.max_steps=abc``
names ``trainer.max_steps``; a value interpolated from elsewhere names its source, e.g. ``pruning.alpha``).
"""

from __future__ import annotations

import collections.abc
import inspect
import re
import types
import typing
from typing import Any, Literal, Union, get_args, get_origin

from omegaconf import DictConfig, ListConfig, OmegaConf

from conformer_prune.errors import UserError


class ConfigError(UserError):
    """An invalid value in the composed config; the message names the key."""


_SEQUENCES = (list, tuple, collections.abc.Sequence, collections.abc.MutableSequence)
_MAPPINGS = (dict, collections.abc.Mapping, collections.abc.MutableMapping)


def _accepts(tp: Any, value: Any) -> bool | None:
    """Whether ``value`` (a plain config value) fits type hint ``tp``; ``None`` when it cannot be told."""
    origin = get_origin(tp)
    if tp is Any or isinstance(tp, typing.TypeVar):
        return None
    if origin in (Union, types.UnionType):
        verdicts = [_accepts(arg, value) for arg in get_args(tp)]
        if True in verdicts:
            return True
        return None if None in verdicts else False
    if origin is Literal:
        return value in get_args(tp)
    if tp is type(None):
        return value is None
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    if tp in _SEQUENCES or origin in _SEQUENCES:
        return isinstance(value, list | tuple | ListConfig)
    if tp in _MAPPINGS or origin in _MAPPINGS:
        return isinstance(value, dict | DictConfig)
    return None


def _describe(tp: Any) -> str:
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        return " or ".join(dict.fromkeys(_describe(arg) for arg in get_args(tp)))
    if origin is Literal:
        return "one of " + ", ".join(repr(v) for v in get_args(tp))
    names = {int: "an integer", float: "a number", bool: "true or false", str: "a string", type(None): "null"}
    if tp in names:
        return names[tp]
    if tp in _SEQUENCES or origin in _SEQUENCES:
        return "a list"
    if tp in _MAPPINGS or origin in _MAPPINGS:
        return "a mapping"
    return getattr(tp, "__name__", str(tp))


def _signature(target: str) -> tuple[inspect.Signature, dict[str, Any]] | None:
    """Signature and resolved type hints of the callable named by ``target`` (``None`` if unknown)."""
    from conformer_prune.checkpoint import resolve_target

    try:
        fn = resolve_target(target, allowed_prefixes=None)
        init = fn.__init__ if inspect.isclass(fn) else fn
        signature = inspect.signature(fn)
        try:
            hints = typing.get_type_hints(init)
        except Exception:  # noqa: BLE001 - unresolvable annotations: check names only
            hints = {}
        return signature, hints
    except (ValueError, TypeError):
        return None


_INTERPOLATION = re.compile(r"^\$\{([A-Za-z_][\w.]*)\}$")


def _walk_targets(node: Any, path: str) -> typing.Iterator[tuple[str, DictConfig]]:
    if isinstance(node, DictConfig):
        if "_target_" in node:
            yield path, node
        for key in node:
            if str(key).startswith("_") or OmegaConf.is_interpolation(node, str(key)):
                continue
            try:
                child = node[key]
            except Exception:  # noqa: BLE001 - unresolvable here (e.g. ${hydra:runtime...}); not ours to check
                continue
            yield from _walk_targets(child, f"{path}.{key}" if path else str(key))
    elif isinstance(node, ListConfig):
        for i, child in enumerate(node):
            yield from _walk_targets(child, f"{path}[{i}]")


def check_types(cfg: DictConfig, roots: typing.Iterable[str] | None = None) -> None:
    """Every key of every ``_target_`` node is an argument of its callable, of the hinted type.

    Raises:
        ConfigError: names the key (and, for an interpolated value, the key it comes from).
    """
    for root in roots if roots is not None else [k for k in cfg if k != "hydra"]:
        node = OmegaConf.select(cfg, root)
        for path, target_node in _walk_targets(node, root):
            found = _signature(str(target_node._target_))
            if found is None:
                continue  # instantiation reports an unknown _target_ with its own message
            signature, hints = found
            params = signature.parameters
            takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
            for key in target_node:
                key = str(key)
                if key.startswith("_"):
                    continue
                where = f"{path}.{key}"
                if key not in params and not takes_any:
                    known = ", ".join(k for k in params if k not in ("self", "args", "kwargs"))
                    raise ConfigError(
                        f"`{where}`: {target_node._target_} takes no argument {key!r} (it takes: {known}). "
                        "Fix: remove or rename the key"
                    )
                if key not in hints:
                    continue
                raw = OmegaConf.to_container(target_node, resolve=False)[key]  # as written (unresolved)
                try:
                    value = target_node[key]
                except Exception:  # noqa: BLE001 - unresolvable here; instantiation reports it
                    continue
                if isinstance(value, DictConfig | ListConfig) and _accepts(hints[key], []) is None:
                    continue  # a nested config (built by instantiate) for an object-typed argument
                if _accepts(hints[key], value) is False:
                    source = _INTERPOLATION.match(raw) if isinstance(raw, str) else None
                    named = f"`{source.group(1)}` (used as `{where}`)" if source else f"`{where}`"
                    raise ConfigError(
                        f"{named}={value!r} is not {_describe(hints[key])} "
                        f"({str(target_node._target_).rsplit('.', 1)[-1]} argument {key!r}). Fix: give it a valid value"
                    )
