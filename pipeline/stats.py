"""Process-wide counters and stage latencies, rendered in Prometheus' text format at /metrics."""
from __future__ import annotations

import threading
from collections import defaultdict


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.outcomes: dict[tuple[str, str], int] = defaultdict(int)
        self.stage_sum: dict[str, float] = defaultdict(float)
        self.stage_count: dict[str, int] = defaultdict(int)
        self.deliveries: dict[tuple[str, str, str], int] = defaultdict(int)

    def count(self, channel: str, outcome: str) -> None:
        with self._lock:
            self.outcomes[(channel, outcome)] += 1

    def count_delivery(self, channel: str, via: str, reason: str = "") -> None:
        """How a chat answer went out: LINE "reply" (free) or "push" (billed) and why not a reply."""
        with self._lock:
            self.deliveries[(channel, via, reason)] += 1

    def observe(self, timings: dict[str, float]) -> None:
        with self._lock:
            for stage, seconds in timings.items():
                self.stage_sum[stage] += seconds
                self.stage_count[stage] += 1

    def render(self, queue_depth: int, queue_capacity: int) -> str:
        lines = ["# HELP cutout_jobs_total Jobs finished, by channel and outcome.",
                 "# TYPE cutout_jobs_total counter"]
        with self._lock:
            for (channel, outcome), value in sorted(self.outcomes.items()):
                lines.append(f'cutout_jobs_total{{channel="{channel}",outcome="{outcome}"}} {value}')
            lines += ["# HELP cutout_chat_deliveries_total Chat answers sent, by channel, route (reply, push, send) "
                      "and why a reply token was not used.", "# TYPE cutout_chat_deliveries_total counter"]
            for (channel, via, reason), value in sorted(self.deliveries.items()):
                lines.append(f'cutout_chat_deliveries_total{{channel="{channel}",via="{via}",reason="{reason}"}} {value}')
            lines += ["# HELP cutout_stage_seconds Time spent per pipeline stage.",
                      "# TYPE cutout_stage_seconds summary"]
            for stage in sorted(self.stage_sum):
                lines.append(f'cutout_stage_seconds_sum{{stage="{stage}"}} {self.stage_sum[stage]:.6f}')
                lines.append(f'cutout_stage_seconds_count{{stage="{stage}"}} {self.stage_count[stage]}')
        lines += ["# HELP cutout_queue_depth Tasks waiting for or in the pipeline thread.",
                  "# TYPE cutout_queue_depth gauge", f"cutout_queue_depth {queue_depth}",
                  "# HELP cutout_queue_capacity Bound of the pipeline queue.",
                  "# TYPE cutout_queue_capacity gauge", f"cutout_queue_capacity {queue_capacity}"]
        return "\n".join(lines) + "\n"
