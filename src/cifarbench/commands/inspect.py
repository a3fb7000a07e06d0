"""``python -m cifarbench inspect [--model.norm batch|none] [--batch_size N]``: Q1-Q4 from the model."""

from __future__ import annotations

from jsonargparse import ArgumentParser

from cifarbench.commands.parsing import new_parser
from cifarbench.lab.questions import inspect_model, to_markdown
from cifarbench.model import resnet18

SUMMARY = "answer the lab's Q1-Q4 (conv layers, last linear input, parameters, gradients) from the model"


def build_parser() -> ArgumentParser:
    parser = new_parser("python -m cifarbench inspect", "Answer the lab's Q1-Q4 from the model itself.")
    # --model.norm as fit spells it, documented where the model defines it.
    parser.add_function_arguments(resnet18, nested_key="model", skip={"num_classes"})
    parser.add_function_arguments(inspect_model, skip={"norm"}, as_group=False)
    return parser


def main(argv: list[str]) -> None:
    options = build_parser().parse_args(argv)
    print(to_markdown(inspect_model(options.model.norm, options.batch_size)))
