"""Command-line flags made from a pydantic request model: one flag per field that declares one
(:func:`scaling_planner.planning.request.option`), with its help, metavar, unit and default from the
field; a nested model's fields become flags of their own (``serving_options.p99_ttft_s`` ->
``--p99-ttft``), as vidur flattens its one nested config into its command line. The model is the one
place an option is defined; ``planner recommend``, ``planner plot`` and the pre-flight script read it."""

from __future__ import annotations

import types
import typing

from .common import INT_MAX, positive, positive_int, quantity

SEPARATOR = "__"  # argparse dest of a nested field: parent__child


def _meta(info) -> dict:
    extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
    return extra.get("cli") or {}


def _bare(annotation):
    """The annotation without ``| None``."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    union = typing.get_origin(annotation) in (typing.Union, types.UnionType)
    return args[0] if union and len(args) == 1 else annotation


def _nested(annotation):
    from pydantic import BaseModel

    bare = _bare(annotation)
    return bare if isinstance(bare, type) and issubclass(bare, BaseModel) else None


def _help(info, meta: dict) -> str:
    text = info.description or ""
    if _bare(info.annotation) is bool and info.default is True and not meta.get("flag"):
        text = f"turn off (on by default): {text}"
    tail = []
    if meta.get("unit"):
        tail.append(meta["unit"])
    default = info.default
    if meta.get("store") is None and default is not None and not isinstance(default, bool) \
            and not hasattr(default, "model_dump"):
        tail.append(f"default {default}")
    return f"{text} [{', '.join(tail)}]" if tail else text


def _fields(model, exclude: tuple[str, ...], every_field: bool):
    """(name, field info, cli metadata) of the fields that are flags: those that declare one, or with
    ``every_field`` every field whose type a flag can carry (numbers, words, switches, nested models)."""
    for name, info in model.model_fields.items():
        meta = _meta(info)
        if name in exclude or (meta and not meta.get("cli", True)):
            continue
        if not meta:
            bare = _bare(info.annotation)
            if not every_field or not (bare in (int, float, str, bool) or _nested(info.annotation)
                                       or typing.get_origin(bare) is typing.Literal):
                continue
        yield name, info, meta


def add_model_arguments(parser, model, *, exclude: tuple[str, ...] = (), every_field: bool = False,
                        _prefix: tuple[str, ...] = ()) -> None:
    """One argparse flag per field of ``model`` that declares one (see the module docstring), or with
    ``every_field`` per field a flag can carry (a flow's request: flag and help from the field's name
    and description). Every default is None, so that a request built from the flags sets only what was
    given; a switch for a field that defaults to True is ``--no-<name>``."""
    groups: dict[str, object] = {}
    for name, info, meta in _fields(model, exclude, every_field):
        nested = _nested(info.annotation)
        if nested is not None:
            add_model_arguments(parser, nested, every_field=every_field, _prefix=(*_prefix, name))
            continue
        target = parser
        if meta.get("group"):
            if meta["group"] not in groups:
                groups[meta["group"]] = parser.add_mutually_exclusive_group()
            target = groups[meta["group"]]
        kwargs = {"dest": SEPARATOR.join((*_prefix, name)), "default": None, "help": _help(info, meta)}
        bare = _bare(info.annotation)
        if meta.get("store") is not None:
            kwargs.update(action="store_const", const=meta["store"])
        elif bare is bool:
            kwargs.update(action="store_const", const=not info.default)

        elif typing.get_origin(bare) is typing.Literal:
            kwargs.update(choices=typing.get_args(bare))
        else:
            kwargs["metavar"] = meta.get("metavar") or name.upper()
            if bare is int:  # a flow's request may count tokens beyond 2**31: its model bounds it
                kwargs["type"] = positive_int(name, allow_zero=True, maximum=2**53 if every_field else INT_MAX)
            elif bare is float:
                kwargs["type"] = positive(name, allow_dollar=True) if meta.get("dollar") else quantity(name)
        target.add_argument(flag_of(info, name), *meta.get("aliases", ()), **kwargs)


def flag_of(info, name: str) -> str:
    """The field's flag: declared, else ``--name`` (``--no-name`` for a switch that defaults to True)."""
    declared = _meta(info).get("flag")
    if declared:
        return declared
    if _bare(info.annotation) is bool and info.default is True:
        return "--no-" + name.replace("_", "-")
    return "--" + name.replace("_", "-")


def model_fields_from(args, model, *, exclude: tuple[str, ...] = (), every_field: bool = False,
                      _prefix: tuple[str, ...] = ()) -> dict:
    """The fields the flags of :func:`add_model_arguments` gave (a nested model: a dict of its own, on
    top of the fields its default sets)."""
    out = {}
    for name, info, _ in _fields(model, exclude, every_field):
        nested = _nested(info.annotation)
        if nested is not None:
            sub = model_fields_from(args, nested, every_field=every_field, _prefix=(*_prefix, name))
            if sub:
                default = info.get_default(call_default_factory=True)
                base = default.model_dump(exclude_unset=True) if default is not None else {}
                out[name] = {**base, **sub}
            continue
        value = getattr(args, SEPARATOR.join((*_prefix, name)), None)
        if value is not None:
            out[name] = value
    return out


def flag_for_field(model, path: str) -> str | None:
    """The flag of a field path (``serving_options.p99_ttft_s`` -> ``--p99-ttft``), or None."""
    head, _, rest = path.partition(".")
    info = model.model_fields.get(head)
    if info is None:
        return None
    nested = _nested(info.annotation)
    if rest and nested is not None:
        return flag_for_field(nested, rest)
    return flag_of(info, head) if _meta(info).get("cli", True) else None


def build_request(model, args, *, exclude: tuple[str, ...] = (), every_field: bool = False, **extra):
    """``model.validated(...)`` of the flags given (plus ``extra``; a model without ``validated`` is
    validated by pydantic, its first error an InputError); an InputError names the flag."""
    from pydantic import ValidationError

    from ..base.errors import InputError
    from ..planning.request import input_error

    fields = {**model_fields_from(args, model, exclude=exclude, every_field=every_field), **extra}
    try:
        try:
            return model.validated(**fields) if hasattr(model, "validated") else model.model_validate(fields)
        except ValidationError as exc:
            raise input_error(exc) from None
    except InputError as exc:
        flag = flag_for_field(model, exc.field)
        if flag is None:
            raise
        raise InputError(flag, exc.problem) from None
