"""The CLI's argument parser class: one-line usage errors, with the closest flag or command suggested (issue 29).

A usage error is ``error: siret-summary run: unrecognized arguments: --tagret;
did you mean --target? see `siret-summary run --help`.`` and exit 2, like every
other CLI failure (issue 25). Suggestions come from :func:`difflib.get_close_matches`
over the flags and commands the parser really has.
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
from typing import Any, NoReturn

#: The top-level ``--help`` text (plain words: no RST, no SPEC references).
DESCRIPTION = ("Rebuild the siret_summary table (one row per establishment) from the election minutes "
               "and invitations, and follow its runs.")


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (``error: ...; see --help``) and exit 2, like every failure."""

    def error(self, message: str) -> NoReturn:
        hint = self.suggestion(message)
        print(f"error: {self.prog}: {message}{hint}; see `{self.prog} --help`.", file=sys.stderr)
        sys.exit(2)

    argv: list[str] = []

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        self.argv = list(sys.argv[1:] if args is None else args)
        return super().parse_known_args(args, namespace)

    def _known_words(self) -> tuple[list[str], list[str]]:
        """The long flags of this parser and of the command given on the line (if any), and the commands."""
        flags: list[str] = []
        commands: list[str] = []
        for action in self._actions:
            flags.extend(s for s in action.option_strings if s.startswith("--"))
            if isinstance(action, argparse._SubParsersAction):
                commands.extend(action.choices)
                given = next((word for word in self.argv if word in action.choices), None)
                if given is not None:
                    for sub_action in action.choices[given]._actions:
                        flags.extend(s for s in sub_action.option_strings if s.startswith("--"))
        return flags, commands

    def suggestion(self, message: str) -> str:
        """``; did you mean --target?`` for an unknown flag or command close to a known one, else ``""``."""
        flags, commands = self._known_words()
        unknown = re.match(r"unrecognized arguments: (.+)", message)
        if unknown:
            for word in unknown.group(1).split():
                name = word.split("=", 1)[0]
                if name.startswith("-"):
                    close = difflib.get_close_matches(name, flags, n=1, cutoff=0.6)
                    if close:
                        return f"; did you mean {close[0]}?"
            return ""
        choice = re.match(r"argument \S+: invalid choice: '([^']*)'", message)
        if choice and commands:
            close = difflib.get_close_matches(choice.group(1), commands, n=1, cutoff=0.6)
            if close:
                return f"; did you mean `{self.prog} {close[0]}`?"
        return ""
