"""An :include: file's commands run as its owner. The owner was once taken
from stat(path) and the items read by a second open(path): a local user
who flips a directory symlink on the path ran her own |command as another
user (9 of 60 messages). Now the directory and the file are opened once
and the owner comes from the file read (delivery_expand.c read_list)."""
import os
import re
import subprocess
import sys

from suite import Suite, make_message, wait_for
from sysusers import system_conf, system_users


def test_include_owner_comes_from_the_file_read():
    s = Suite(start=False)
    text = re.sub(r"^local \{.*\}$", system_conf(s), s.conf_text, count=1, flags=re.M)
    out = os.path.join(s.dir, "who")
    open(out, "w").close()
    os.chmod(out, 0o666)
    with system_users(s.dir, 2) as (ann, ben):
        home = ann.pw_dir
        victim = os.path.basename(ben.pw_dir)          # ben's home, owned by ben
        real = os.path.join(home, "real")
        os.mkdir(real)
        cmd = os.path.join(real, victim)
        with open(cmd, "w") as f:
            f.write(f'"|/usr/bin/id -un >> {out}"\n')
        fwd = os.path.join(home, ".forward")
        with open(fwd, "w") as f:
            f.write(f":include:{home}/d/{victim}\n")
        for p in (real, cmd, fwd):
            os.chown(p, ann.pw_uid, ann.pw_gid)
        os.chmod(real, 0o755)
        os.chmod(cmd, 0o644)
        os.chmod(fwd, 0o644)
        # ann's flipper: d -> dirname(ben's home) / d -> real, forever
        flip = (f"import os\nh={home!r}\na={os.path.dirname(ben.pw_dir)!r}\nb={real!r}\n"
                "os.symlink(a, h+'/d')\n"
                "while True:\n"
                " for t in (a, b):\n"
                "  try: os.unlink(h+'/t')\n"
                "  except OSError: pass\n"
                "  os.symlink(t, h+'/t'); os.replace(h+'/t', h+'/d')\n")
        def as_ann():
            os.setgroups([])
            os.setgid(ann.pw_gid)
            os.setuid(ann.pw_uid)
        fl = subprocess.Popen([sys.executable, "-c", flip], preexec_fn=as_ann)
        try:
            with s.start_with_conf(text):
                for i in range(60):
                    s.send("x@example.test", [f"{ann.pw_name}@example.test"], make_message(i))
                s.wait_queue_empty(timeout=120)
                who = open(out).read().split()
        finally:
            fl.kill()
        assert ben.pw_name not in who, f"ann's command ran as {ben.pw_name}: {who}"
        assert ann.pw_name in who, who      # the flips let some through as hers
