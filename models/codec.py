"""Plain-data codec for the domain values: dataclasses <-> JSON-compatible dicts.

Pure functions, no file I/O (the workspace and drone_io do the writing). Handles
nested frozen dataclasses, enums, paths, tuples, dicts, optionals and numpy
arrays, driven by the dataclass type hints so a load gives back typed values.
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from pathlib import Path
from typing import Any, TypeVar, Union, get_args, get_origin, get_type_hints

import numpy as np

T = TypeVar("T")


def to_jsonable(obj: Any) -> Any:
    """Convert a value tree into JSON-compatible data."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, float) and obj != obj:  # NaN is not JSON
        return None
    return obj


def from_jsonable(cls: type[T], data: Any) -> T:
    """Rebuild a typed value of ``cls`` from :func:`to_jsonable` output."""
    return typing.cast(T, _decode(cls, data))


def _decode(tp: Any, data: Any) -> Any:
    origin = get_origin(tp)
    if tp is Any:
        return data
    if origin in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if data is None:
            return None
        return _decode(args[0], data) if len(args) == 1 else data
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        hints = get_type_hints(tp)
        kwargs = {}
        for f in dataclasses.fields(tp):
            if f.name in data:
                kwargs[f.name] = _decode(hints[f.name], data[f.name])
        return tp(**kwargs)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return tp(data)
    if tp is Path:
        return Path(data)
    if tp is float:
        return float("nan") if data is None else float(data)
    if tp is int:
        return int(data)
    if origin is tuple:
        targs = get_args(tp)
        if len(targs) == 2 and targs[1] is Ellipsis:
            return tuple(_decode(targs[0], v) for v in data)
        return tuple(_decode(a, v) for a, v in zip(targs, data))
    if origin is list:
        (arg,) = get_args(tp)
        return [_decode(arg, v) for v in data]
    if origin is dict:
        karg, varg = get_args(tp)
        return {_decode(karg, k): _decode(varg, v) for k, v in data.items()}
    if origin is np.ndarray or tp is np.ndarray:
        return np.asarray(data)
    return data
