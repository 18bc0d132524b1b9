"""What a lost Ray worker costs, decided once for extract, embed-targets and ablate.

Ray restarts a lost actor (`max_restarts`) and retries a lost task; which work goes back to the
queue, when an item that keeps killing workers stops being retried, and the one line that tells
the user are decided here, Ray-free, so they are tested without killing anything.
"""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable


def death_of(err: BaseException) -> tuple[str, str]:
    """(node, exit) of a Ray actor or worker error: where the process ran and how it ended."""
    text = str(err)
    found = re.search(r"\bip: (\S+)", text) or re.search(r"node (?:ip|IP|address):? ?(\d+\.\d+\.\d+\.\d+)", text)
    node = found.group(1) if found else "?"
    name = type(err).__name__
    if getattr(err, "preempted", False):
        how = "node preempted"
    elif name == "NodeDiedError" or "node" in text.lower() and "died" in text.lower() and "raylet" in text.lower():
        how = "node lost"
    elif name == "OutOfMemoryError" or "OOM" in text or "out of memory" in text.lower():
        how = "out of memory"
    elif name == "ActorUnavailableError" or "connection error" in text or "unexpectedly" in text:
        how = "process died: killed or crashed"  # Ray knows only that the connection to it broke
    else:
        how = name
    return node, how


@dataclass
class Verdict:
    """What happens after one lost worker."""

    restart: bool
    """Ray brings the worker back (it had restarts left)."""
    poison: str | None
    """The item that now stops being retried (it was being worked on in `item_deaths` deaths)."""
    deaths: int
    """Deaths so far with the blamed item in hand."""


class FaultLog:
    """Counts deaths per worker and per item, says what each one cost, and records it for the manifest.

    `restarts`: restarts Ray grants each worker; `item_deaths`: deaths with an item in hand after
    which it is failed instead of re-queued; `say`: prints one line (thread-safe callers: the
    drain threads of a run)."""

    def __init__(self, *, restarts: int, item_deaths: int, say: Callable[[str], None], noun: str = "worker"):
        self.restarts, self.item_deaths, self.say, self.noun = restarts, max(1, item_deaths), say, noun
        self.by_worker: Counter[int] = Counter()
        self.by_item: Counter[str] = Counter()
        self.events: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._t0 = time.time()

    def lost(self, worker: int, err: BaseException, *, requeued: list[str], blamed: str | None,
             node: str | None = None) -> Verdict:
        """Record that `worker` died holding `requeued` (labels, e.g. "shard 7") while on `blamed`;
        `node`: where it ran, when known better than the error says."""
        found, how = death_of(err)
        node = node or found
        with self._lock:
            self.by_worker[worker] += 1
            restart = self.by_worker[worker] <= self.restarts
            deaths = 0
            poison = None
            if blamed is not None:
                self.by_item[blamed] += 1
                deaths = self.by_item[blamed]
                poison = blamed if deaths >= self.item_deaths else None
            self.events.append({"worker": worker, "node": node, "exit": how, "requeued": requeued, "on": blamed,
                                "after_s": round(time.time() - self._t0, 1), "restarted": restart})
        back = f"{', '.join(requeued)} re-queued" if requeued else "nothing was in hand"
        then = (f"restarted ({self.by_worker[worker]} of {self.restarts})" if restart
                else "no restarts left: the others go on")
        self.say(f"{self.noun} {worker} on node {node} lost (exit: {how}); {back}; {then}")
        if poison is not None:
            self.say(f"{poison}: {deaths} {self.noun}(s) died on it; listed as failed, not retried again")
        return Verdict(restart, poison, deaths)

    def record(self, since: int = 0) -> dict[str, Any]:
        """The manifest's account of the losses from the `since`-th on: {} for an undisturbed run."""
        events = self.events[since:]
        if not events:
            return {}
        return {"worker_restarts": sum(e["restarted"] for e in events), "lost_workers": events}
