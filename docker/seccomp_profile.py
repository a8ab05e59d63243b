#!/usr/bin/python3
"""Writes docker/seccomp-modeldock.json: Docker's default seccomp profile plus the two calls the
model workers need to confine themselves inside a container.

Docker's default profile allows `unshare` only to containers with CAP_SYS_ADMIN, so a worker
cannot make its own user and network namespace there, and then it keeps the server's view of the
filesystem and network (docs/ARCHITECTURE.md, "The image and the sandbox"). This profile adds:

  * unshare(CLONE_NEWUSER | CLONE_NEWNET): exactly that flag set, nothing else (a user namespace
    gives the worker the capability for chroot; the network namespace is empty);
  * chroot: Docker's default allows it only to containers that keep CAP_SYS_CHROOT; the kernel
    still checks the capability, which the container's processes lack (compose drops them all)
    and a worker holds only inside its own user namespace, over nothing but its empty root.

The worker's own filter (sandbox/syscall_filter.cc) then denies unshare, chroot, mount, setns,
sockets and exec before any model code runs, on top of this profile.

Docker's default profile is not copied into this repository: it is read from Debian's
golang-github-docker-docker-dev (the source of the docker.io package, same version), unpacked
into a temporary directory with `apt-get download` + `dpkg-deb -x` when it is not installed, or
from --default (another Docker release's profiles/seccomp/default.json).

Usage: docker/seccomp_profile.py [--default PATH] [--out PATH]
"""
import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile

CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
DEBIAN_PACKAGE = "golang-github-docker-docker-dev"
PROFILE_IN_PACKAGE = "usr/share/gocode/src/github.com/docker/docker/profiles/seccomp/default.json"

MODELDOCK_RULES = [
    {
        "names": ["unshare"],
        "action": "SCMP_ACT_ALLOW",
        "args": [{"index": 0, "value": CLONE_NEWUSER | CLONE_NEWNET, "op": "SCMP_CMP_EQ"}],
        "comment": "modeldock-worker: its own user and network namespace (this flag set only)",
        "includes": {},
        "excludes": {},
    },
    {
        "names": ["chroot"],
        "action": "SCMP_ACT_ALLOW",
        "args": [],
        "comment": "modeldock-worker: chroot into its empty root inside its user namespace",
        "includes": {},
        "excludes": {},
    },
]


def load_default(path):
    if path:
        with open(path) as f:
            return json.load(f), path
    installed = "/" + PROFILE_IN_PACKAGE
    if os.path.exists(installed):
        with open(installed) as f:
            return json.load(f), installed
    with tempfile.TemporaryDirectory() as tmp:
        os.chmod(tmp, 0o777)  # apt-get downloads as its _apt user
        subprocess.run(["apt-get", "download", DEBIAN_PACKAGE], cwd=tmp, check=True,
                       stdout=subprocess.DEVNULL)
        deb = glob.glob(os.path.join(tmp, DEBIAN_PACKAGE + "_*.deb"))[0]
        subprocess.run(["dpkg-deb", "-x", deb, os.path.join(tmp, "x")], check=True)
        with open(os.path.join(tmp, "x", PROFILE_IN_PACKAGE)) as f:
            return json.load(f), os.path.basename(deb)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--default", help="Docker's default.json (default: Debian's package)")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                      "seccomp-modeldock.json"))
    args = parser.parse_args()
    profile, source = load_default(args.default)
    if profile.get("defaultAction") != "SCMP_ACT_ERRNO" or "syscalls" not in profile:
        sys.exit(f"seccomp_profile: {source} does not look like Docker's default profile")
    if any(r.get("comment", "").startswith("modeldock-worker") for r in profile["syscalls"]):
        sys.exit(f"seccomp_profile: {source} already holds the modeldock rules")
    profile["syscalls"].extend(MODELDOCK_RULES)
    with open(args.out, "w") as f:
        json.dump(profile, f, indent=1)
        f.write("\n")
    print(f"seccomp_profile: wrote {args.out} (Docker's default from {source} + unshare"
          f"(CLONE_NEWUSER|CLONE_NEWNET) and chroot)")


if __name__ == "__main__":
    main()
