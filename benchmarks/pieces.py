"""Where the library's CPU per item goes, piece by piece: `python -m benchmarks.pieces`.

Both clients' per-batch work is run in this one process, without HTTP, on the same 100-item
batches of updates built beforehand, with the echo server's answer as canned bytes; each piece
is timed over a whole job and the best of the rounds is kept, which a shared machine's noise
only ever slows. The HTTP work, the same for both clients, and building the `ItemUpdate`s (the
floor row of `make bench`) are left out.
"""

from __future__ import annotations

import argparse
import itertools
import time
import uuid

import orjson

from pleo_export_async import ItemUpdate, _codec
from pleo_export_async._core._acknowledgements import Acknowledgements
from pleo_export_async._core._classify import make_item_error_classifier
from pleo_export_async._core._tracker import ItemTracker

_ORJSON_OPTIONS = orjson.OPT_UTC_Z | orjson.OPT_OMIT_MICROSECONDS
Job = list[tuple[list[ItemUpdate], bytes]]  # each batch's updates and Pleo's answer to it


def make_job(job_id: str, batches: int) -> Job:
    job: Job = []
    for _ in range(batches):
        updates = [
            ItemUpdate.successful(str(uuid.uuid4()), external_id=f"JE-{n}") for n in range(100)
        ]
        answer = orjson.dumps(
            {
                "data": [
                    {
                        "accountingEntryId": u.accounting_entry_id,
                        "status": "successful",
                        "externalId": u.external_id,
                        "exportJobId": job_id,
                    }
                    for u in updates
                ],
                "errors": [],
            }
        )
        job.append((updates, answer))
    return job


def plain_pieces(job_id: str, job: Job) -> dict[str, float]:
    """The plain loop's work per batch: a dict per item, the body, the answer, the count."""
    times = {"plain: dicts and body": 0.0, "plain: read the answer, count": 0.0}
    clock = time.perf_counter
    for updates, answer in job:
        start = clock()
        chunk = list(itertools.islice(iter(updates), 100))
        body = orjson.dumps(
            [
                {
                    "accountingEntryId": u.accounting_entry_id,
                    "status": "successful",
                    "externalId": u.external_id,
                }
                for u in chunk
            ],
            option=_ORJSON_OPTIONS,
        )
        encoded = clock()
        returned = {entry["accountingEntryId"] for entry in orjson.loads(answer)["data"]}
        sum(1 for u in chunk if u.accounting_entry_id in returned)
        read = clock()
        times["plain: dicts and body"] += encoded - start
        times["plain: read the answer, count"] += read - encoded
        assert body
    return times


def library_pieces(job_id: str, job: Job) -> dict[str, float]:
    """The library's work per batch, step by step, as `JobRun.update()` does it."""
    times = dict.fromkeys(
        (
            "library: fill (the job's index of IDs)",
            "library: the batch's ID list",
            "library: body",
            "library: read the answer",
            "library: reconcile and settle (fingerprints)",
        ),
        0.0,
    )
    tracker = ItemTracker(Acknowledgements(), make_item_error_classifier(), 3)
    call = tracker.begin_call(checked=False)  # a stream, as the benchmark's input is
    clock = time.perf_counter
    for updates, answer in job:
        start = clock()
        batch = tracker.plan(100)
        tracker.fill(batch, iter(updates), 100)
        filled = clock()
        tracker.mark_sent(batch)
        assert batch.updates is not None
        marked = clock()
        body = _codec.encode_item_updates(batch.updates)
        encoded = clock()
        reading = _codec.read_item_update_response(answer, job_id)
        read = clock()
        outcome = tracker.reconcile(batch, reading.acknowledged_ids, reading.errors)
        reconciled = clock()
        call.batches.append(batch)
        call.acknowledged += outcome.acknowledged
        times["library: fill (the job's index of IDs)"] += filled - start
        times["library: the batch's ID list"] += marked - filled
        times["library: body"] += encoded - marked
        times["library: read the answer"] += read - encoded
        times["library: reconcile and settle (fingerprints)"] += reconciled - read
        assert body
    return times


def best_of(rounds: int, batches: int) -> dict[str, float]:
    """µs per item of each piece: the best of `rounds` jobs of `batches` batches each."""
    job_id = str(uuid.uuid4())
    best: dict[str, float] = {}
    for _ in range(rounds):
        for pieces in (plain_pieces, library_pieces):
            job = make_job(job_id, batches)  # fresh IDs, as a real job's are
            for name, seconds in pieces(job_id, job).items():
                per_item = seconds / (batches * 100) * 1e6
                best[name] = min(best.get(name, per_item), per_item)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.pieces")
    parser.add_argument("--rounds", type=int, default=25)
    parser.add_argument("--batches", type=int, default=1000, help="batches of 100 in each job")
    arguments = parser.parse_args()
    best = best_of(arguments.rounds, arguments.batches)
    items = arguments.batches * 100
    print(f"| piece (best of {arguments.rounds} jobs of {items:,} items) | µs per item |")
    print("|---|---|")
    for name, per_item in best.items():
        print(f"| {name} | {per_item:.3f} |")
    plain = sum(v for k, v in best.items() if k.startswith("plain"))
    library = sum(v for k, v in best.items() if k.startswith("library"))
    print(f"| plain, in all | {plain:.3f} |")
    print(f"| library, in all | {library:.3f} |")


if __name__ == "__main__":
    main()
