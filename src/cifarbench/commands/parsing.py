"""What the verbs share about parsing: jsonargparse parsers that raise, bool options as flags, passing unknown
options on, and one-line error messages."""

from __future__ import annotations

import re
from collections.abc import Sequence

from jsonargparse import ArgumentError, ArgumentParser

from cifarbench.errors import ConfigError


def new_parser(prog: str, description: str) -> ArgumentParser:
    """A jsonargparse parser that raises ArgumentError (``cifarbench.__main__`` words it), not exits."""
    return ArgumentParser(prog=prog, description=description, exit_on_error=False)


def bools_as_flags(parser: ArgumentParser) -> None:
    """Let ``--quick`` mean ``--quick true``, as a flag reads; ``--quick false`` still works."""
    for action in parser._actions:
        if getattr(action, "_typehint", None) is bool and action.option_strings:
            action.nargs, action.const = "?", True


_BOOL_WORDS = {"true", "false", "yes", "no"}


def split_known(parser: ArgumentParser, argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """``argv`` split into the options ``parser`` knows (with their values) and the rest, both in order.

    The rest passes through untouched (the lab hands it to ``fit``). The option names and whether each takes
    a value come from the parser itself, so the split never needs a list kept by hand.
    """
    takes_value = {
        option: action.nargs != 0 for action in parser._actions for option in action.option_strings
    }
    own: list[str] = []
    rest: list[str] = []
    index = 0
    while index < len(argv):
        arg = argv[index]
        name = arg.split("=", 1)[0]
        if name not in takes_value:
            rest.append(arg)
        elif "=" in arg or not takes_value[name]:
            own.append(arg)
        else:
            following = argv[index + 1] if index + 1 < len(argv) else None
            flag = getattr(parser._option_string_actions.get(name), "nargs", None) == "?"
            if (
                flag
                and following is not None
                and not following.startswith("-")
                and following.lower() not in _BOOL_WORDS
            ):
                # A word after a flag would otherwise reach fit as a stray argument, far from its cause.
                raise ConfigError(f"{name} is a flag: give it alone or with true or false, not {following!r}")
            if following is None or (flag and following.lower() not in _BOOL_WORDS):
                own.append(arg)  # a flag given alone, or a value left out: the parser says which
            else:
                own += [arg, following]
                index += 1
        index += 1
    return own, rest


_KEY = re.compile(r'Parser key "(?P<key>[^"]+)"')
_RESTRICTION = re.compile(r"restriction v(?P<op>>=|<=|>|<|==)(?P<bound>-?\d+)")
_CUSTOM_REASON = re.compile(r"Not of type \w+: (?P<reason>(?:must|use) .*)")
_PLAIN_TYPES = re.compile(r"Expected a <class '(\w+)'>")
_CHOICES = re.compile(r"Expected a typing\.Literal\[(?P<choices>[^\]]*)\]")


def explain(error: ArgumentError, argv: Sequence[str]) -> str:
    """jsonargparse's error as one line that names the option, the value given and the rule.

    Errors it cannot shorten (a nested class path, say) are returned whole, without the usage text.
    """
    text = str(error)
    key = _KEY.search(text)
    if key is None:
        return text
    option = f"--{key['key']}"
    given = _value_of(option, argv)
    shown = f"{option} {given!r}" if given is not None else option
    custom = _CUSTOM_REASON.search(text)
    if custom:
        return f"{shown} {custom['reason']}"
    choices = _CHOICES.search(text)
    if choices:
        return f"{shown} must be one of {choices['choices']}"
    restriction = _RESTRICTION.search(text)
    if restriction and "int" in text.lower():
        op, bound = restriction["op"], int(restriction["bound"])
        if op == ">":
            op, bound = ">=", bound + 1
        return f"{shown} must be a whole number {op} {bound}"
    if "Expected a dot import path" in text:
        return f"{shown} is not a class that can be imported: give its name (Adam) or path (torch.optim.Adam)"
    types = _PLAIN_TYPES.findall(text)
    if types:
        return f"{shown} must be {' or '.join('null' if name == 'NoneType' else name for name in types)}"
    return f"{shown}: {text}"


def _value_of(option: str, argv: Sequence[str]) -> str | None:
    """The value given for ``option`` (its last occurrence: the one that counts)."""
    value = None
    for index, arg in enumerate(argv):
        if arg == option and index + 1 < len(argv):
            value = argv[index + 1]
        elif arg.startswith(f"{option}="):
            value = arg.split("=", 1)[1]
    return value
