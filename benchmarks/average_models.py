"""Average like models (same config, fine-tuned from one start with different seeds) into one file.

    python benchmarks/average_models.py runs/s0/final.safetensors runs/s1/final.safetensors --out runs/soup.safetensors
"""

from __future__ import annotations

import argparse

from autocrop.train.soup import average_model_files


def main() -> None:
    """Average the model files given on the command line into --out."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", help="model files (.safetensors with their cards)")
    parser.add_argument("--out", required=True, help="output .safetensors (card written beside it)")
    args = parser.parse_args()
    card = average_model_files(args.models, args.out)
    print(f"{args.out}: mean of {len(args.models)} models, sha256 {card['sha256'][:12]}")


if __name__ == "__main__":
    main()
