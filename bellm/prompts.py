"""Prompt templates. A template holds `{text}` once; named templates can be given by name."""

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


def resolve_prompt(prompt: str) -> str:
    """A name from PROMPTS or a literal template; the template must contain `{text}` exactly once."""
    template = PROMPTS.get(prompt, prompt)
    if template.count("{text}") != 1:
        raise InputError(
            f"prompt {prompt!r} must be one of {sorted(PROMPTS)} or a template containing '{{text}}' exactly once"
        )
    try:
        template.format(text="x")
    except (KeyError, IndexError, ValueError) as e:
        raise InputError(
            f"prompt template {template!r} has stray braces ({e}); escape literal braces as {{{{ }}}}"
        ) from None
    return template
