"""Torn queue files (lib/mail/queue.h, lib/mail/qfile.h END checksum): cleanup renames
a file into incoming/ before it is on disk, so after a power cut incoming/
may hold a truncated, zero-filled or damaged file that was never
acknowledged. qmgr must move each to corrupt/ and deliver none, while a good
file beside them is delivered."""
import glob
import os
import re
import shutil
import time

from suite import Suite, make_message, wait_for

HOLD_RULES = """
stage postq {
  rule "keep" { if msg.subject == "keep me" { return quarantine("torn"); } }
}
"""


def _real_queue_file(s):
    """A queue file written by Postern itself: quarantined by a rule, so it
    stays in the spool. Returns (qid, bytes)."""
    body = "".join(f"line {i} of a body long enough for several blocks\r\n" for i in range(120))
    s.send("alice@example.test", ["bob@example.test"],
           make_message(1, subject="keep me", body=body))
    qdir = os.path.join(s.spool, "quarantine", "torn")
    files = wait_for(lambda: glob.glob(os.path.join(qdir, "*")), 20, "a quarantined file")
    path = files[0]
    with open(path, "rb") as f:
        return os.path.basename(path), f.read(), path


def _torn_variants(data):
    """(label, bytes): truncations at many points after the rename point,
    flipped single bytes, zero-filled tail blocks."""
    n = len(data)
    out = []
    for cut in (1, 10, 19, 40, 200, 600, n // 2, n - 600, n - 17, n - 12, n - 4, n - 1):
        out.append((f"truncated at {cut}", data[:cut]))
    for at in (30, n // 3, n // 2, n - 40, n - 8, n - 1):
        b = bytearray(data)
        b[at] ^= 0x04
        out.append((f"byte {at} flipped", bytes(b)))
    for blk in (512, 4096):
        z = (n - 1) // blk * blk
        out.append((f"last {blk}-byte block zeroed", data[:z] + bytes(n - z)))
        out.append((f"first {blk}-byte block zeroed", bytes(blk) + data[blk:]))
    return out


def _other_id(qid, i):
    """A valid queue id of the same shape, distinct per i."""
    al = "0123456789ABCDEFGHJKLMNPQRSTVWXZ"
    return qid[:-3] + al[(i // 32) % 32] + al[i % 32] + "Z"


def test_torn_files_go_to_corrupt_and_good_file_is_delivered():
    s = Suite(start=False)
    rules = os.path.join(s.dir, "test.rules")
    with open(rules, "w") as f:
        f.write(HOLD_RULES)
    os.chmod(rules, 0o644)
    with s.start_with_conf(s.conf_text + f'rules = "{rules}";\n'):
        qid, data, qpath = _real_queue_file(s)
        s.stop()
        incoming = os.path.join(s.spool, "incoming")
        # the good file, back in incoming/ under its own name
        shutil.move(qpath, os.path.join(incoming, qid))
        torn = {}
        for i, (label, b) in enumerate(_torn_variants(data)):
            tid = _other_id(qid, i)
            assert tid != qid
            p = os.path.join(incoming, tid)
            with open(p, "wb") as f:
                f.write(b)
            os.chown(p, s.uid, s.gid)
            os.chmod(p, 0o600)
            torn[tid] = label
        s.write_conf(s.conf_text.replace(f'rules = "{rules}";\n', ""))
        s.start()
        got = s.wait_delivered("bob", 1)
        with open(got[0], "rb") as f:
            assert b"keep me" in f.read()
        corrupt = os.path.join(s.spool, "corrupt")
        wait_for(lambda: len(os.listdir(corrupt)) >= len(torn), 20,
                 f"{len(torn)} files in corrupt/ (have {os.listdir(corrupt)})")
        assert sorted(os.listdir(corrupt)) == sorted(torn), (os.listdir(corrupt), torn)
        s.wait_queue_empty()
        log = s.log()
        for tid, label in torn.items():
            m = re.search(rf"{tid}: corrupt queue file moved to corrupt/{tid}: (.*)", log)
            assert m, f"{label}: no corrupt log line for {tid}"
            assert "does not match its name" not in m.group(1), (label, m.group(1))
        time.sleep(0.5)
        assert len(s.delivered("bob")) == 1, s.delivered("bob")
