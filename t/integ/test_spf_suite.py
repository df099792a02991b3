"""The openspf RFC 7208 test suite (shipped with python3-spf) through
`postern spf`: each scenario's zone data served by libunbound local-data
(spfzone.py), every test run through the CLI. Postern must pass at least
202 of the 203 (python3-spf's own score); a test that allows several
results accepts any of them; an expected explanation is compared too
("DEFAULT": Postern's default explanation)."""
import gzip

import yaml

from spfzone import SpfRig, default_explanation

SUITE = "/usr/share/doc/python3-spf/rfc7208-tests.yml.gz"


def run_suite():
    passed, failures = 0, []
    with gzip.open(SUITE) as f:
        scenarios = list(yaml.safe_load_all(f))
    for sc in scenarios:
        rig = SpfRig(sc.get("zonedata") or {})
        try:
            for tid, t in sc["tests"].items():
                want = t["result"] if isinstance(t["result"], list) else [t["result"]]
                got, exp = rig.check(t["host"], t["mailfrom"], t["helo"])
                ok = got in want
                if ok and "explanation" in t:
                    wexp = t["explanation"]
                    if wexp == "DEFAULT":
                        wexp = default_explanation(t["host"], t["mailfrom"], t["helo"])
                    ok = exp == wexp
                if ok:
                    passed += 1
                else:
                    failures.append(f"{tid}: want {want} {t.get('explanation', '')!r}, "
                                    f"got {got} {exp!r}")
        finally:
            rig.cleanup()
    return passed, failures


def test_rfc7208_suite():
    passed, failures = run_suite()
    for f in failures:
        print("  spf suite:", f)
    print(f"  spf suite: {passed} of {passed + len(failures)} passed")
    assert passed + len(failures) == 203
    assert passed >= 202, f"only {passed} of 203"


if __name__ == "__main__":
    test_rfc7208_suite()
