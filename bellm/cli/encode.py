"""`bellm encode`: sentences in a file → embeddings in a `.npy` file."""

from __future__ import annotations

from pathlib import Path

import typer

from bellm.cli import app
from bellm.cli.common import user_errors
from bellm.errors import InputError


@app.command()
def encode(
    input: Path = typer.Argument(
        ..., help="sentences: .txt (one per line) or .tsv/.csv/.jsonl with a 'sentence' or 'text' column"
    ),
    output: Path = typer.Option(..., "--output", "-o", help="where to write the (N, dim) float32 .npy"),
    model: str = typer.Option("smollm2-135m", help="embedded name, HF directory, .gguf file or hub id"),
    adapter: Path | None = typer.Option(None, help="a trained LoRA adapter directory (merged before encoding)"),
    bidirectional_layers: str = typer.Option(
        "2", "--bidirectional-layers", "-k", help="last k layers bidirectional (int or 'all')"
    ),
    pooling: str = typer.Option("last", help="last | mean | mean_span"),
    prompt: str = typer.Option("prompteol", help="prompt name (prompteol, bellm, none) or a template with {text}"),
    max_length: int = typer.Option(
        64, help="max tokens per prompted sentence (the sentence is truncated, never the prompt)"
    ),
    batch_size: int = typer.Option(32, help="sentences per forward pass"),
    normalize: bool = typer.Option(True, help="L2-normalise embeddings"),
) -> None:
    """Encode sentences from INPUT into a .npy matrix, in input order."""
    import numpy as np

    from bellm.data import read_sentences
    from bellm.encoder import load_encoder
    from bellm.io import atomic_path

    with user_errors():
        if output.suffix != ".npy":
            raise InputError(f"{output}: output must end in .npy")
        sentences = read_sentences(input)
        k: int | str = int(bidirectional_layers) if bidirectional_layers.isdigit() else bidirectional_layers
        enc = load_encoder(
            model, bidirectional_layers=k, pooling=pooling, prompt=prompt, max_length=max_length, adapter=adapter
        )
        emb = enc.encode(sentences.texts, batch_size=batch_size, normalize=normalize)
        with atomic_path(output) as tmp:
            with open(tmp, "wb") as f:
                np.save(f, emb)
    typer.echo(f"wrote {output} {emb.shape} (model fingerprint {enc.fingerprint})")
