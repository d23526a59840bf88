"""The help format of every command line: defaults shown once, and only where there is one."""

from __future__ import annotations

import argparse


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """Appends "(default: X)" to a flag's help unless the help already says its default or
    there is none to show (None, e.g. a required flag; a switch that is off; "")."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text, default = action.help or "", action.default
        if ("default" in text or default is None or default is False or default == ""
                or default is argparse.SUPPRESS or action.required):
            return text
        return text + " (default: %(default)s)"
