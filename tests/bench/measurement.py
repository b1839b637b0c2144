"""One benchmark result and how it compares with its target and with the database's own speed."""

from __future__ import annotations

from dataclasses import dataclass

# ``role`` marks the physical reference (pgbench) that every other figure is compared with.
REFERENCE_TPS = "pgbench_tps"
REFERENCE_LATENCY = "pgbench_latency"


@dataclass(frozen=True)
class Measurement:
    name: str
    value: float
    unit: str
    target: float | None = None
    higher_is_better: bool = True
    note: str = ""
    role: str = ""

    @property
    def ratio(self) -> float | None:
        """Value over target (target over value when lower is better): 1.00 or more meets it."""
        if self.target is None or self.value == 0:
            return None
        return self.value / self.target if self.higher_is_better else self.target / self.value

    @property
    def is_rate(self) -> bool:
        return self.unit.endswith("/s")

    @property
    def is_latency(self) -> bool:
        return self.unit == "ms"

    def versus(self, reference_tps: float | None, reference_latency_ms: float | None) -> str:
        """This figure as a multiple of pgbench's: rates over its TPS, latencies over its mean latency."""
        if self.value == 0 or self.role:
            return "-"
        if self.is_rate and reference_tps:
            return f"{self.value / reference_tps:.2f}"
        if self.is_latency and reference_latency_ms:
            return f"{self.value / reference_latency_ms:.1f}x"
        return "-"

    @property
    def shown_value(self) -> str:
        return f"{self.value:,.2f} {self.unit}" if self.value < 100 else f"{self.value:,.0f} {self.unit}"

    @property
    def shown_target(self) -> str:
        if self.target is None:
            return "-"
        sign = ">=" if self.higher_is_better else "<="
        return f"{sign} {self.target:,.2f} {self.unit}" if self.target < 100 else f"{sign} {self.target:,.0f} {self.unit}"

    @property
    def verdict(self) -> str:
        if self.ratio is None:
            return self.note
        return ("ok" if self.ratio >= 1 else "BELOW TARGET") + (f"; {self.note}" if self.note else "")
