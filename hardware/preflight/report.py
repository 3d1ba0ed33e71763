"""The pre-flight report: one result per check, rendered for the operator and as JSON."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

PASS, FAIL, WARN, SKIP = "pass", "FAIL", "warn", "skip"


@dataclass
class CheckResult:
    name: str
    status: str  # pass | FAIL | warn | skip
    detail: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class PreflightReport:
    checks: list[CheckResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.status != FAIL for c in self.checks)

    def get(self, name: str) -> CheckResult:
        for c in self.checks:
            if c.name == name:
                return c
        raise KeyError(name)

    def render(self) -> str:
        width = max(len(c.name) for c in self.checks) if self.checks else 8
        lines = ["pre-flight check"]
        for c in self.checks:
            lines.append(f"  [{c.status:^4}] {c.name:<{width}}  {c.detail}")
        lines.append("PRE-FLIGHT PASSED: motion may be enabled" if self.ok else "PRE-FLIGHT FAILED: do not enable motion")
        return "\n".join(lines)

    def as_dict(self) -> dict:
        return {"ok": self.ok, "checks": [asdict(c) for c in self.checks]}
