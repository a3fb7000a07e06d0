"""What a lab part hands back: its section of the report and the files it wrote."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from cifarbench.run_folder import Run


@dataclass
class PartResult:
    """A part's markdown section (figure links relative to its own folder) and its files."""

    part: str
    title: str
    markdown: str
    folder: Path
    csv_path: Path
    figures: list[Path] = field(default_factory=list)
    runs: list[Run] = field(default_factory=list)

    def write_markdown(self, command: str) -> Path:
        """``<folder>/<part>.md``: the section with the command that made it and each run's fit command."""
        path = self.folder / f"{self.part}.md"
        path.write_text(f"# {self.title}\n\n{section_body(self, command)}\n")
        return path


def section_body(result: PartResult, command: str) -> str:
    fits = "\n".join(f"- `{run.command}`" for run in result.runs)
    details = ""
    if fits:
        details = f"\n\n<details><summary>fit command of each run</summary>\n\n{fits}\n\n</details>"
    data = f"Data: [{result.csv_path.name}]({result.csv_path.name})"
    return f"Command: `{command}`\n\n{result.markdown}\n\n{data}{details}"
