"""`bellm encode`: sentences in a file → embeddings in a `.npy` file."""

from __future__ import annotations

from pathlib import Path

import typer

from bellm.cli import app
from bellm.cli.common import user_errors
from bellm.cli.options import EncoderChoice, encoder_options
from bellm.errors import InputError


@app.command()
@encoder_options
def encode(
    input: Path = typer.Argument(
        ..., help="sentences: .txt (one per line) or .tsv/.csv/.jsonl with a 'sentence' or 'text' column"
    ),
    output: Path = typer.Option(..., "--output", "-o", help="where to write the (N, dim) float32 .npy"),
    encoder: EncoderChoice = None,  # type: ignore[assignment] - filled by @encoder_options
    batch_size: int = typer.Option(32, help="sentences per forward pass"),
    normalize: bool = typer.Option(True, help="L2-normalise embeddings"),
) -> None:
    """Encode sentences from INPUT into a .npy matrix, in input order."""
    import numpy as np

    from bellm.data import read_sentences
    from bellm.io import atomic_path

    with user_errors():
        if output.suffix != ".npy":
            raise InputError(f"{output}: output must end in .npy")
        sentences = read_sentences(input)
        enc = encoder.load()
        emb = enc.encode(sentences.texts, batch_size=batch_size, normalize=normalize)
        with atomic_path(output) as tmp:
            with open(tmp, "wb") as f:
                np.save(f, emb)
    typer.echo(f"wrote {output} {emb.shape} (model fingerprint {enc.fingerprint})")
