"""RSS per hostile input through the real worker path (issue 9: "RSS stays bounded, measured").

One embedded Tansu broker and one `vigil worker --agents intake,hashing,classify,decide` (the
shipped policy: images wait for `nsfw_image`, posts for `text_abuse`). After a warm-up (a few
posts and benign images, so models and pools are loaded), every case of
`tests.integration.hostile_inputs.cases()` is produced to its input topic, one at a time, and
the bench waits for its answer (a verdict for its content id, or a dead letter of its bytes).
Around each input it reads the worker's `/proc/<pid>/status`:

- before: `VmRSS`, then `VmHWM` (peak RSS) is reset by writing `5` to `/proc/<pid>/clear_refs`;
- after the answer: `VmHWM` → **peak growth** = peak − before (what this input cost at most),
  and `VmRSS` → **retained** = after − before (what it left behind).

Every round runs all cases in order with fresh content ids; rounds repeat (`--rounds`) so noise
and allocator reuse hit every case alike. The `benign` case (an ordinary 2000×1500 PNG) is the
yardstick: each hostile input's median peak growth is printed as a multiple of benign's median
peak growth in the same run. Memory is what is measured; the answer time is printed as context.

Run from the repository root::

    PYTHONPATH=. .venv/bin/python -m bench.hostile [--rounds 3] [--agents ...]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import tempfile
from pathlib import Path

from aiokafka import AIOKafkaProducer

from streams.topics import DEADLETTER, VERDICTS
from tests.integration.helpers import running, unique_prefix, vigil_env
from tests.integration.hostile_inputs import (
    BENIGN,
    MAX_REQUEST,
    URL_ALLOWLIST,
    Answers,
    Case,
    Measured,
    cases,
    listen,
    measure,
    proc_kb,
    warm_up,
)
from vigil.broker import EmbeddedBroker


def rounds_of(rounds: int, big_post_mb: int) -> list[list[Case]]:
    return [cases(f"-r{r}", big_post_mb=big_post_mb) for r in range(rounds)]


def report(results: dict[str, list[Measured]], order: list[str]) -> None:
    benign = statistics.median(m.peak for m in results[BENIGN])
    print(f"\nper input (median of {len(results[BENIGN])} rounds; MB of worker RSS; "
          f"× benign = median peak growth ÷ benign's {benign:.1f} MB):")
    print(f"{'input':<22} {'peak MB':>8} {'max':>6} {'retained':>9} {'× benign':>9} "
          f"{'answer s':>9}  answer")
    for name in order:
        ms = results[name]
        peak = statistics.median(m.peak for m in ms)
        ratio = f"{peak / benign:.2f}" if benign > 0 else "n/a"
        answers = sorted({m.answer for m in ms})
        print(f"{name:<22} {peak:>8.1f} {max(m.peak for m in ms):>6.1f} "
              f"{sum(m.retained for m in ms) / len(ms):>9.1f} {ratio:>9} "
              f"{statistics.median(m.seconds for m in ms):>9.2f}  {' | '.join(answers)}")


async def main_async(args: argparse.Namespace) -> None:
    print("generating inputs ...", flush=True)
    plan = rounds_of(args.rounds, args.big_post_mb)
    work = Path(tempfile.mkdtemp(prefix="vigil-hostile-"))
    try:
        with EmbeddedBroker() as broker:
            env = vigil_env(broker.url, unique_prefix(), work / "data",
                            VIGIL_DECIDE_DEADLINE_MS="5000",
                            VIGIL_IMAGE_URL_ALLOWLIST=URL_ALLOWLIST)
            with running(["worker", "--agents", args.agents], env, work / "data") as worker:
                answers = Answers()
                listener = asyncio.create_task(listen(
                    broker.bootstrap, [VERDICTS.full_name(worker.prefix),
                                       DEADLETTER.full_name(worker.prefix)], answers))
                producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks="all",
                                            max_request_size=MAX_REQUEST)
                await producer.start()
                try:
                    await warm_up(worker, producer, answers, listener)
                    start_mb = proc_kb(worker.proc.pid, "VmRSS") / 1024
                    print(f"worker `{args.agents}` ready and warm: RSS {start_mb:.0f} MB",
                          flush=True)
                    results: dict[str, list[Measured]] = {}
                    for r, round_cases in enumerate(plan):
                        for case in round_cases:
                            m = await measure(worker, producer, answers, case, args.timeout)
                            results.setdefault(case.name, []).append(m)
                            print(f"round {r + 1} {case.name:<22} peak +{m.peak:6.1f} MB  "
                                  f"retained {m.retained:+6.1f} MB  {m.seconds:6.2f} s  "
                                  f"{m.answer}", flush=True)
                    end_mb = proc_kb(worker.proc.pid, "VmRSS") / 1024
                finally:
                    listener.cancel()
                    await producer.stop()
                alive = worker.proc.poll() is None
                errors = [line for line in worker.log().splitlines()
                          if "Traceback" in line or "ERROR" in line or "CRITICAL" in line]
        report(results, [c.name for c in plan[0]])
        print(f"\nworker RSS ready {start_mb:.0f} MB → after every round {end_mb:.0f} MB "
              f"({end_mb - start_mb:+.0f}); alive at the end: {alive}; "
              f"error lines in its log: {len(errors)}")
        for line in errors[:10]:
            print("  " + line[:200])
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.hostile",
                                     description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--agents", default="intake,hashing,classify,decide")
    parser.add_argument("--big-post-mb", type=int, default=10)
    parser.add_argument("--timeout", type=float, default=90.0, help="per input (s)")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
