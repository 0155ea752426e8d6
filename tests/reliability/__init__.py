"""The reliability suite: chaos, crashes, cancellations, hostile answers, bad input,
secrets, and the figures of what the library survived. `PLEO_CHAOS=full` runs it at scale."""
