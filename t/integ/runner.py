"""Minimal test runner for t/integ: runs every test_* function of the given
files (in order), prints PASS/FAIL per test and ends with the line
'N passed, N failed'. Exit status 1 if anything failed.
POSTERN_TEST=substring runs only matching tests. A test that runs longer
than POSTERN_TEST_TIMEOUT seconds (600) fails with a traceback of where it
waited, so a hang costs one test, not the whole CI run."""
import importlib.util
import os
import signal
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


class TestTimeout(Exception):
    pass


def on_alarm(signum, frame):
    raise TestTimeout(f"the test ran longer than {LIMIT} s")


LIMIT = int(os.environ.get("POSTERN_TEST_TIMEOUT", "600"))


def main(paths):
    only = os.environ.get("POSTERN_TEST", "")
    signal.signal(signal.SIGALRM, on_alarm)
    passed = failed = 0
    failures = []
    for path in paths:
        name = os.path.splitext(os.path.basename(path))[0]
        spec = importlib.util.spec_from_file_location(name, path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        tests = [(n, f) for n, f in vars(mod).items() if n.startswith("test_") and callable(f)]
        tests.sort(key=lambda t: t[1].__code__.co_firstlineno)
        for tname, fn in tests:
            full = f"{name}.{tname}"
            if only and only not in full:
                continue
            t0 = time.time()
            try:
                signal.alarm(LIMIT)
                try:
                    fn()
                finally:
                    signal.alarm(0)
                passed += 1
                print(f"PASS {full} ({time.time() - t0:.1f}s)", flush=True)
            except Exception:
                failed += 1
                failures.append(full)
                print(f"FAIL {full} ({time.time() - t0:.1f}s)", flush=True)
                traceback.print_exc()
                sys.stdout.flush()
    if failures:
        print("failed: " + ", ".join(failures))
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
