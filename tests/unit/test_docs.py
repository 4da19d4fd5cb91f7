"""The README says what the code does."""

from __future__ import annotations

import re
from pathlib import Path

from qjt.config import Settings

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_readme_documents_every_setting_with_its_default() -> None:
    rows = dict(re.findall(r"^\| `(QJT_[A-Z_]+)` \| ([^|]+) \|", README, flags=re.MULTILINE))
    for name, field in Settings.model_fields.items():
        key = f"QJT_{name.upper()}"
        assert key in rows, f"README's configuration table lacks {key}"
        default = field.get_default(call_default_factory=True)
        if isinstance(default, bool):
            default = str(default).lower()  # as it is written in the environment
        shown = "unset" if default is None else f"`{default}`"
        assert rows[key].strip() == shown, (
            f"README shows {rows[key].strip()} for {key}, code has {shown}"
        )
    assert set(rows) == {f"QJT_{n.upper()}" for n in Settings.model_fields}, (
        "README lists a setting the code lacks"
    )


def test_readme_shows_the_two_commands_a_diagram_and_compose() -> None:
    assert "make up" in README and "make test" in README
    assert "```mermaid" in README
    assert "docker compose up" in README
    assert "Real IBM Quantum" in README
