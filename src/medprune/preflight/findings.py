"""What a preflight found: errors (the run must not start), warnings (it may, but the user
should know: a field that will be truncated, a remote file not checked) and what was checked."""

from __future__ import annotations

from dataclasses import dataclass, field

from medprune.errors import MedpruneError


@dataclass
class PreflightReport:
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def raise_for_errors(self) -> None:
        if self.errors:
            raise PreflightError(self)


class PreflightError(MedpruneError):
    """One or more inputs are broken; each problem is one line naming the file, field or tensor."""

    def __init__(self, report: PreflightReport):
        self.report = report
        if len(report.errors) == 1:
            text = report.errors[0]
        else:
            text = f"{len(report.errors)} problems found before any work:\n" + "\n".join(
                f"  - {e}" for e in report.errors
            )
        super().__init__(text)
