from __future__ import annotations

import subprocess
import sys

from screener.cli import COMMANDS, build_parser


def test_help_is_fast_and_imports_nothing_heavy():
    code = ("import sys; from screener import cli; cli.build_parser().format_help(); "
            "heavy=[m for m in ('torch','monai','pydicom','nibabel') if m in sys.modules]; "
            "print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_every_command_has_help():
    parser = build_parser()
    for name in COMMANDS:
        text = subprocess.run([sys.executable, "-m", "screener", name, "--help"],
                              capture_output=True, text=True)
        assert text.returncode == 0, (name, text.stderr)
        assert "usage: screener " + name in text.stdout
    assert parser.parse_args(["screen", "x", "-o", "y"]).device == "auto"
