"""Prompt templates. A template holds one real `{text}` field; named templates can be given by name.

Templates are Python format strings: `{text}` is the sentence, `{{` / `}}` are literal braces. Whether a
template really has a `{text}` field is decided by formatting it with a sentinel (never by counting the
substring: `{{text}}` contains it but formats to a literal "{text}", which would give every sentence the
same embedding). Torch-free: the ONNX runtime validates the exported template with the same code.
"""

from __future__ import annotations

from bellm.errors import InputError

PROMPTS: dict[str, str] = {
    # PromptEOL (Jiang et al., 2023): the default.
    "prompteol": 'This sentence : "{text}" means in one word:"',
    # BeLLM's own template (Li & Li, 2024).
    "bellm": 'The representative word for sentence {text} is:"',
    # No prompt: the raw sentence.
    "none": "{text}",
}
DEFAULT_PROMPT = "prompteol"
_SENTINEL = "\x00bellm-text\x00"


class PromptError(InputError):
    """A prompt name or template that cannot be used."""


def split_template(template: str) -> tuple[str, str]:
    """(prefix, suffix) around the one `{text}` field, as they appear in the formatted prompt.

    `template.format(text=s) == prefix + s + suffix` for every s. Raises `PromptError` for a template
    without exactly one real `{text}` field, or with other fields / stray braces.
    """
    if not isinstance(template, str):
        raise PromptError(f"a prompt template must be a string, got {type(template).__name__}")
    try:
        full = template.format(text=_SENTINEL)
    except (KeyError, IndexError, ValueError, AttributeError) as e:
        raise PromptError(
            f"prompt template {template!r} has stray braces or fields other than {{text}} ({type(e).__name__}: {e}); "
            "escape literal braces as {{ }}"
        ) from None
    if full.count(_SENTINEL) != 1:
        raise PromptError(
            f"prompt template {template!r} must contain exactly one {{text}} field (found {full.count(_SENTINEL)}; "
            "'{{text}}' is a literal, not a field)"
        )
    prefix, suffix = full.split(_SENTINEL)
    return prefix, suffix


def resolve_prompt(prompt: str) -> str:
    """A name from PROMPTS or a literal template with exactly one real `{text}` field → the template."""
    template = PROMPTS.get(prompt, prompt)
    try:
        split_template(template)
    except PromptError as e:
        raise PromptError(f"prompt {prompt!r} is neither one of {sorted(PROMPTS)} nor a usable template: {e}") from None
    return template
