"""The one encoder-option block of the CLI, generated from `EncoderConfig` (names, help, defaults).

`@encoder_options` adds `--model`, `--adapter`, `-k/--bidirectional-layers`, `--pooling`, `--prompt`,
`--max-length`, `--keep-layers` and `--override-adapter` to a command and hands it one `EncoderChoice`. Every flag
defaults to "not given", so an adapter's `bellm.json` supplies what the user did not say, and a flag that
contradicts it is an error unless `--override-adapter` is given.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_type_hints

import typer

from bellm.config import EncoderConfig
from bellm.errors import InputError

_F = EncoderConfig.model_fields
_ADAPTER_WINS = "; with --adapter: the adapter's setting"


def _help(name: str, text: str | None = None) -> str:
    f = _F[name]
    default = {"source": "the embedded model", "keep_layers": "all"}.get(name, f.default)
    return f"{text or f.description} (default: {default}{_ADAPTER_WINS})"


# (parameter name, type, typer option): the EncoderConfig fields first, in field order.
_OPTIONS: list[tuple[str, Any, Any]] = [
    ("model", str | None, typer.Option(None, "--model", help=_help("source", "embedded name, local HF dir, .gguf "
                                                                   "file, or hub id"), show_default=False)),
    ("bidirectional_layers", str | None, typer.Option(
        None, "--bidirectional-layers", "-k", help=_help("bidirectional_layers", "last k layers bidirectional "
                                                         "(an int or 'all')"), show_default=False)),
    ("pooling", str | None, typer.Option(None, help=_help("pooling"), show_default=False)),
    ("prompt", str | None, typer.Option(None, help=_help("prompt"), show_default=False)),
    ("max_length", int | None, typer.Option(None, help=_help("max_length"), show_default=False)),
    ("keep_layers", int | None, typer.Option(None, help=_help("keep_layers", "decoder layers kept from the bottom "
                                                              "(the top ones are removed; the last k count from the "
                                                              "new top)"), show_default=False)),
    ("adapter", Path | None, typer.Option(
        None, help="a trained LoRA adapter directory (merged before use); its bellm.json sets every encoder option "
        "not given")),
    ("override_adapter", bool, typer.Option(
        False, "--override-adapter", help="let explicit encoder options override the adapter's recorded settings "
        "(otherwise a contradiction is an error)")),
]
_FIELD_OF = {"model": "source"}


@dataclass(frozen=True)
class EncoderChoice:
    """What the user asked for: the explicit settings, an optional adapter, and whether flags may override it."""

    config: EncoderConfig  # only the flags given are set (`model_fields_set`)
    adapter: Path | None
    override_adapter: bool

    def load(self, **kwargs: Any):  # noqa: ANN201 - an Encoder (import stays lazy: torch)
        from bellm.encoder import load_encoder

        if self.adapter is not None and not self.adapter.is_dir():
            raise InputError(f"{self.adapter}: adapter directory not found")
        return load_encoder(self.config, adapter=self.adapter, override_adapter=self.override_adapter, **kwargs)


def encoder_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Decorator: add the encoder options to a typer command; it receives them as `encoder: EncoderChoice`."""
    sig = inspect.signature(fn)
    hints = get_type_hints(fn)
    if "encoder" not in sig.parameters:
        raise TypeError(f"{fn.__name__} needs an `encoder` parameter to receive the EncoderChoice")
    params = [p.replace(annotation=hints.get(p.name, p.annotation)) for p in sig.parameters.values()
              if p.name != "encoder"]
    params += [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=opt, annotation=typ)
               for name, typ, opt in _OPTIONS]
    names = [name for name, _, _ in _OPTIONS]

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        values = {name: kwargs.pop(name) for name in names}
        adapter, override = values.pop("adapter"), values.pop("override_adapter")
        given = {_FIELD_OF.get(k, k): v for k, v in values.items() if v is not None}
        from bellm.cli.common import user_errors

        with user_errors():
            from bellm.config import encoder_config

            config = encoder_config(None, **given)
        return fn(*args, encoder=EncoderChoice(config, adapter, override), **kwargs)

    wrapper.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in params}
    return wrapper
