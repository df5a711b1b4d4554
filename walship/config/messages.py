"""Validation errors as one line: the source, the key path, the value (never a secret) and
what was expected; an unknown key gets a "did you mean"; the ``store:`` keys are checked
against the backend class's arguments."""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Mapping
from typing import Any, get_origin

from pydantic import BaseModel

from walship.config.keys import Loc, dotted
from walship.config.redaction import shown
from walship.config.schema import WalshipConfig
from walship.errors import ConfigError


def _model_at(loc: Loc) -> type[BaseModel] | None:
    """The model class that holds the keys at ``loc`` (for "did you mean")."""
    model: type[BaseModel] | None = WalshipConfig
    for part in loc:
        if isinstance(part, int) or model is None:
            continue
        field = model.model_fields.get(part)
        if field is None:
            return None
        model = _model_of(field.annotation)
    return model


def _model_of(annotation: object) -> type[BaseModel] | None:
    # on Python 3.10 a parametrised generic (list[X]) passes isinstance(..., type), and then
    # issubclass raises TypeError: only a plain class (no origin) can be a model
    if isinstance(annotation, type) and get_origin(annotation) is None:
        return annotation if issubclass(annotation, BaseModel) else None
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _model_of(arg)
        if found is not None:
            return found
    origin = getattr(annotation, "__origin__", None)
    return _model_of(origin) if origin is not None and origin is not annotation else None


def _unknown_key(loc: Loc, keys: list[str], context: str = "") -> str:
    key = str(loc[-1])
    close = difflib.get_close_matches(key, keys, n=1, cutoff=0.6)
    if close:
        return f"{dotted(loc)}: unknown key{context} (did you mean {close[0]!r}?)"
    return f"{dotted(loc)}: unknown key{context} (expected one of: {', '.join(keys)})"


_STRUCTURE = {
    "model_type": "a mapping of keys to values",
    "model_attributes_type": "a mapping of keys to values",
    "dict_type": "a mapping of keys to values",
    "list_type": "a list",
    "string_type": "a string",
}


def error_line(err: Any, refs: Mapping[Loc, str], data: object) -> str:
    loc: Loc = tuple(err["loc"])
    kind = err["type"]
    ctx = err.get("ctx") or {}
    if kind == "extra_forbidden":
        model = _model_at(loc[:-1])
        return _unknown_key(loc, list(model.model_fields) if model else [])
    if kind == "missing":
        model = _model_at(loc[:-1])
        field = model.model_fields.get(str(loc[-1])) if model else None
        what = field.description if field and field.description else "a value"
        return f"{dotted(loc)}: missing, expected {what}"
    value = err.get("input")
    if kind == "walship":
        what = ctx["expected"]
        if ctx.get("path"):
            sub = tuple(ctx["path"].split("."))
            loc = (*loc, *sub)
            value = _lookup(data, loc)
    else:
        what = _STRUCTURE.get(kind) or str(err["msg"]).removeprefix("Input should be ")
    return f"{dotted(loc)} = {shown(loc, value, refs)}: expected {what}"


def _lookup(data: object, loc: Loc) -> object:
    for part in loc:
        if isinstance(data, Mapping):
            data = data.get(part)
        elif isinstance(data, list) and isinstance(part, int) and part < len(data):
            data = data[part]
        else:
            return None
    return data


def check_store(cfg: WalshipConfig, source: str, refs: Mapping[Loc, str]) -> None:
    """The backend exists and the other ``store:`` keys are arguments of its class."""
    from walship.backends.registry import BackendError, backend_names, load_backend

    backend = cfg.store.backend
    try:
        cls = load_backend(backend)
    except BackendError as e:
        known = backend_names()
        if backend not in known:
            close = difflib.get_close_matches(backend, known, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ConfigError(
                f"{source}: store.backend = {shown(('store', 'backend'), backend, refs)}: "
                f"expected a store backend ({hint}known: {', '.join(known)})"
            ) from None
        raise ConfigError(f"{source}: store.backend: {e}") from None
    try:
        params = inspect.signature(cls).parameters
    except (TypeError, ValueError):  # no introspectable signature: the class will judge
        return
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return
    accepted = [n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    for key in cfg.store.options:
        if key not in accepted:
            msg = _unknown_key(("store", key), ["backend", *accepted], f" for backend {backend!r}")
            raise ConfigError(f"{source}: {msg}")
    for name in accepted:
        if params[name].default is inspect.Parameter.empty and name not in cfg.store.options:
            raise ConfigError(
                f"{source}: store.{name}: missing, expected a value (backend {backend!r} "
                f"requires {name!r})"
            )
