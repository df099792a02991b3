"""pickup once counted files cleanup deferred against its batch and swept
again at once while the batch was full: 50 or more deferred maildrop files
(here: a local user over a domain's messages_per_hour) were resubmitted
in a tight loop (61804 deferrals in 10 s) and files later in directory
order waited. Now a deferred file is skipped for PK_RETRY_SECS."""
import os
import time

from suite import Suite
from test_sendmail import local_users, sendmail, maildrop


def pickup_cpu(s):
    for pid in s.child_pids("pickup"):
        st = open(f"/proc/{pid}/stat").read()
        f = st[st.rindex(")") + 2:].split()
        return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
    return None


def test_deferred_files_neither_spin_nor_block_others():
    s = Suite(start=False, extra_conf='domain "tenant.test" { limits { messages_per_hour = 1; } }')
    with local_users() as (u,):
        s.start()
        try:
            for i in range(60):
                r = sendmail(u, s, "-f", "me@tenant.test", "kim@example.test",
                             input=f"Subject: {i}\n\nbody {i}\n".encode())
                assert r.returncode == 0, r.stderr
            time.sleep(3)
            c0, l0 = pickup_cpu(s), s.log().count("cleanup refused it for now")
            time.sleep(10)
            c1, l1 = pickup_cpu(s), s.log().count("cleanup refused it for now")
            assert l1 - l0 < 200, f"{l1 - l0} deferrals in 10 s: a tight loop"
            assert c1 - c0 < 2, f"pickup used {c1 - c0} s of CPU in 10 s"
            for i in range(5):   # another sender, not limited
                r = sendmail(u, s, "-f", "other@example.test", "ola@example.test",
                             input=f"Subject: other {i}\n\nbody\n".encode())
                assert r.returncode == 0, r.stderr
            # the deferred ones do not hold them back
            s.wait_delivered("ola", 5, timeout=30)
            assert len(maildrop(s)) == 59, len(maildrop(s))   # the limit let one through
        finally:
            s.__exit__(None, None, None)
