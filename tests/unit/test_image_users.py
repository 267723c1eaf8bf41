"""The users and groups the project's Dockerfiles create must not collide with what a Debian base
already has: the first real build of the operator image failed with `groupadd: group 'operator'
already exists` (Debian's base-passwd ships group operator, gid 37, in python:*-slim-bookworm too).
Pure: reads the Dockerfiles (and the host's base-passwd lists when it is Debian)."""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# The model images (model-service, iris-model) are FROM the model runtime and create no account of their own.
DOCKERFILES = [ROOT / "images" / "operator" / "Dockerfile", ROOT / "images" / "model-runtime" / "Dockerfile"]

# Debian bookworm base-passwd 3.6.1 (/usr/share/base-passwd/{group,passwd}.master): the static names
# every Debian image has, plus the system users that minbase's packages add.
DEBIAN_GROUPS = {"root", "daemon", "bin", "sys", "adm", "tty", "disk", "lp", "mail", "news", "uucp", "man", "proxy",
                 "kmem", "dialout", "fax", "voice", "cdrom", "floppy", "tape", "sudo", "audio", "dip", "www-data",
                 "backup", "operator", "list", "irc", "src", "gnats", "shadow", "utmp", "video", "sasl", "plugdev",
                 "staff", "games", "users", "nogroup", "_ssh", "systemd-journal"}
DEBIAN_USERS = {"root", "daemon", "bin", "sys", "sync", "games", "man", "lp", "mail", "news", "uucp", "proxy",
                "www-data", "backup", "list", "irc", "gnats", "_apt", "nobody", "systemd-network", "messagebus"}
BASE_PASSWD = Path("/usr/share/base-passwd")


def accounts_created(dockerfile: Path) -> list[tuple[str, str, dict[str, str]]]:
    """("groupadd"|"useradd", name, options) for every account a RUN line creates."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    found = []
    for line in text.splitlines():
        if not line.strip().upper().startswith("RUN "):
            continue
        for command in re.findall(r"\b((?:groupadd|useradd)\s[^&;|]*)", line):
            words = shlex.split(command)
            options, positional, i = {}, [], 1
            while i < len(words):
                word = words[i]
                if word in ("--gid", "-g", "--uid", "-u", "--home-dir", "-d", "--shell", "-s"):
                    options[word.lstrip("-")] = words[i + 1]
                    i += 2
                    continue
                if not word.startswith("-"):
                    positional.append(word)
                i += 1
            found.append((words[0], positional[-1], options))
    return found


def test_the_known_names_match_the_hosts_debian_lists_when_there_are_any():
    if not (BASE_PASSWD / "group.master").is_file():
        pytest.skip("not a Debian host: no /usr/share/base-passwd")
    groups = {line.split(":")[0] for line in (BASE_PASSWD / "group.master").read_text().splitlines() if line}
    users = {line.split(":")[0] for line in (BASE_PASSWD / "passwd.master").read_text().splitlines() if line}
    assert groups <= DEBIAN_GROUPS and users <= DEBIAN_USERS


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_accounts_are_new_names_with_uid_and_gid_10001(dockerfile):
    accounts = accounts_created(dockerfile)
    assert {kind for kind, _, _ in accounts} == {"groupadd", "useradd"}, accounts
    for kind, name, options in accounts:
        taken = DEBIAN_GROUPS if kind == "groupadd" else DEBIAN_USERS
        assert name not in taken, f"{dockerfile.parent.name}: {kind} {name}: Debian already has that name"
        assert options.get("gid") == "10001", (kind, name, options)
        if kind == "useradd":
            assert options.get("uid") == "10001", (name, options)
