"""Start-up time of `vigil run`: seconds from exec to `/readyz` 200 on the embedded broker.

Compares Vigil's settings (6 s session/rebalance timeouts) with faust's defaults (60 s / 60 s) in
the same run, since an absolute time on a noisy 2-core box means little on its own. Usage:

    python -m bench.startup [--runs 3] [--skip-default]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

from vigil.broker import free_port


def time_to_ready(extra_env: dict[str, str], timeout: float = 120.0) -> float:
    """Seconds until `vigil run` answers /readyz with 200 (then it is stopped)."""
    port = free_port()
    with tempfile.TemporaryDirectory() as data_dir:
        env = {**os.environ, "VIGIL_WEB_PORT": str(port), "VIGIL_DATA_DIR": data_dir,
               "VIGIL_SIGNING_KEY": "bench", **extra_env}
        env.pop("VIGIL_BROKER", None)
        started = time.monotonic()
        proc = subprocess.Popen(  # noqa: S603
            [sys.executable, "-m", "vigil.cli", "run"], env=env,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            while time.monotonic() - started < timeout:
                try:
                    with urllib.request.urlopen(  # noqa: S310 - loopback
                        f"http://127.0.0.1:{port}/readyz", timeout=1
                    ) as response:
                        if response.status == 200:
                            return time.monotonic() - started
                except OSError:
                    pass
                time.sleep(0.05)
            return float("nan")
        finally:
            proc.terminate()
            proc.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--skip-default", action="store_true",
                        help="skip the slow faust-defaults baseline")
    args = parser.parse_args()
    cases = {"vigil (6 s timeouts)": {}}
    if not args.skip_default:
        cases = {
            "faust defaults (60 s timeouts)": {
                "VIGIL_BROKER_SESSION_TIMEOUT": "60", "VIGIL_BROKER_REBALANCE_TIMEOUT": "60",
                "VIGIL_BROKER_HEARTBEAT_INTERVAL": "3",
            },
            **cases,
        }
    results = {name: [time_to_ready(env) for _ in range(args.runs)] for name, env in cases.items()}
    baseline = statistics.median(next(iter(results.values())))
    print(f"{'case':32} {'median s':>9} {'min s':>7} {'max s':>7} {'vs first':>9}")
    for name, times in results.items():
        median = statistics.median(times)
        print(f"{name:32} {median:9.2f} {min(times):7.2f} {max(times):7.2f} "
              f"{median / baseline:8.2f}×")


if __name__ == "__main__":
    main()
