"""The `bellm` command: a thin typer CLI over the library. Each subcommand lives in its own module."""

from __future__ import annotations

import importlib
import logging
import sys

import typer

app = typer.Typer(
    name="bellm",
    help=(
        "Turn a decoder LLM into a BeLLM sentence encoder: make the last k attention layers bidirectional, "
        "LoRA-train it with the AnglE objective, gate it on STS benchmarks and export it to ONNX.\n\n"
        "The default model is the embedded SmolLM2-135M (no hub needed).\n\n"
        "Where state lives: caches in $BELLM_HOME, runs in $BELLM_ARTIFACTS, data in $BELLM_DATA. Defaults: "
        "in a source checkout <repo>/.bellm, <repo>/artifacts and <repo>/data; installed from a wheel, "
        "~/.cache/bellm (or $XDG_CACHE_HOME/bellm), ./artifacts and ./data in the current directory.\n\n"
        "Exit codes: 0 ok, 1 a quality gate or check failed, 2 bad input or a busy directory."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


PLUGIN_GROUP = "bellm.commands"


@app.callback()
def _root() -> None:
    """bellm: BeLLM sentence encoders from decoder LLMs."""


def _register() -> None:
    # Each module adds its command(s) to `app` on import.
    from bellm.cli import encode  # noqa: F401

    for optional in ("eval", "train", "export", "runs", "sweep", "serve"):
        try:
            __import__(f"bellm.cli.{optional}")
        except ModuleNotFoundError as e:
            if e.name != f"bellm.cli.{optional}":
                raise
    for module in command_plugins():
        importlib.import_module(module)


def command_plugins() -> list[str]:
    """Modules adding commands from outside the library (`run`, `ablate`: with the flows, in `bellm_app`): the
    `bellm.commands` entry points installed, and those of the checkout's pyproject.toml (no reinstall needed)."""
    import tomllib
    from importlib.metadata import entry_points

    from bellm.paths import REPO_ROOT

    found = {ep.value for ep in entry_points(group=PLUGIN_GROUP)}
    if (pyproject := REPO_ROOT / "pyproject.toml").is_file() and (REPO_ROOT / "bellm").is_dir():
        declared = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("project", {}).get("entry-points", {})
        found |= set(declared.get(PLUGIN_GROUP, {}).values())
    return sorted(found)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    for noisy in ("httpx", "httpcore", "urllib3"):  # Prefect's API client logs every request at INFO
        logging.getLogger(noisy).setLevel(logging.WARNING)
    _register()
    app()


if __name__ == "__main__":
    main()
