"""Changes to the host that a real-pods test run makes, each recorded with its undo, undone in reverse.

Why: a run brings up a bridge, routes, firewall rules, sysctls, cgroups and mounts; a test run must
leave the machine as it found it, also when it fails half way. Every change goes through
`HostChanges`, which runs the change and remembers how to take it back; `restore()` undoes
everything (best effort, newest first) and reports what it could not undo.
"""
from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

RULE_COMMENT = "cachedmodel-pods"  # marks every iptables rule we add, so a stale one can be found


def run(*args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
    result = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} exited {result.returncode}: {(result.stderr or result.stdout).strip()}")
    return result


def read_sysctl(name: str) -> str:
    return Path("/proc/sys", *name.split(".")).read_text().strip()


def write_sysctl(name: str, value: str) -> None:
    Path("/proc/sys", *name.split(".")).write_text(f"{value}\n")


def mounts_under(root: Path) -> list[str]:
    """Mount points at or below `root`, deepest first (the order to unmount them)."""
    targets = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        target = line.split()[4].replace("\\040", " ")
        if target == str(root) or target.startswith(f"{root}/"):
            targets.append(target)
    return sorted(set(targets), key=len, reverse=True)


def unmount_all(root: Path) -> list[str]:
    """Lazily unmount everything below `root` (netns, shm, overlay, volumes); return what was unmounted."""
    done = []
    for target in mounts_under(root):
        if run("umount", "-l", target, check=False).returncode == 0:
            done.append(target)
    return done


def remove_cgroups(name: str) -> list[str]:
    """rmdir the cgroup `name` (e.g. kubepods) in every cgroup v1 hierarchy, deepest directories first."""
    removed = []
    for hierarchy in Path("/sys/fs/cgroup").iterdir():
        top = hierarchy / name
        if not top.is_dir():
            continue
        # a cgroup directory goes with rmdir once it has no tasks and no child cgroups (control files stay)
        for directory in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
            try:
                directory.rmdir()
            except OSError:
                pass
        try:
            top.rmdir()
            removed.append(str(top))
        except OSError:
            pass
    return removed


@dataclass
class HostChanges:
    """An undo log: `apply(describe, do, undo)` runs `do` and remembers `undo`."""

    undo: list[tuple[str, Callable[[], object]]] = field(default_factory=list)

    def apply(self, description: str, do: Callable[[], object], undo: Callable[[], object]) -> None:
        do()
        self.undo.append((description, undo))

    def on_restore(self, description: str, undo: Callable[[], object]) -> None:
        """Something to undo that was changed by another program (kubelet, kube-proxy)."""
        self.undo.append((description, undo))

    def sysctl(self, name: str, value: str) -> None:
        """Set it; put the original back afterwards unless someone else has changed it meanwhile."""
        original = read_sysctl(name)

        def undo() -> None:
            if read_sysctl(name) == value:
                write_sysctl(name, original)

        self.apply(f"sysctl {name}={value}", lambda: write_sysctl(name, value), undo)

    def keep_sysctls(self, names: list[str]) -> None:
        """Restore these sysctls afterwards, whoever changes them (the kubelet sets kernel.panic & co)."""
        for name in names:
            original = read_sysctl(name)
            self.on_restore(f"sysctl {name} back to {original}", lambda n=name, v=original: write_sysctl(n, v))

    def keep_nft_tables(self) -> None:
        """Tables that iptables-nft creates on first use (ip filter, nat, ...) go again if they end up empty."""
        before = set(nft_tables())

        def drop_new_empty_tables() -> None:
            for table in set(nft_tables()) - before:
                if iptables_table_is_empty(table):
                    run("nft", "delete", "table", *table.split(), check=False)

        self.on_restore("nft tables created by this run", drop_new_empty_tables)

    def iptables_rule(self, table: str, chain: str, *rule: str) -> None:
        spec = [*rule, "-m", "comment", "--comment", RULE_COMMENT]
        self.apply(f"iptables -t {table} -I {chain} {' '.join(rule)}",
                   lambda: run("iptables", "-w", "-t", table, "-I", chain, "1", *spec),
                   lambda: run("iptables", "-w", "-t", table, "-D", chain, *spec, check=False))

    def restore(self) -> list[str]:
        """Undo everything, newest first; return the descriptions of undos that failed."""
        failed = []
        while self.undo:
            description, undo = self.undo.pop()
            try:
                undo()
            except Exception as error:  # noqa: BLE001 - keep undoing the rest
                failed.append(f"{description}: {error}")
        return failed


def nft_tables() -> list[str]:
    """`family name` of every nftables table, e.g. "ip filter"."""
    if shutil.which("nft") is None:
        return []
    return [line.removeprefix("table ").strip() for line in run("nft", "list", "tables", check=False).stdout.splitlines()
            if line.startswith("table ")]


IPTABLES_FAMILIES = {"ip": "iptables", "ip6": "ip6tables"}


def iptables_table_is_empty(table: str) -> bool:
    """Is this nft table one of iptables-nft's (`ip filter`, `ip6 nat` ...) holding no rule and no chain
    of anyone's? Judged through iptables itself, as its owner sees it; anything unreadable is kept."""
    family, _, name = table.partition(" ")
    command = IPTABLES_FAMILIES.get(family)
    if command is None or shutil.which(command) is None:
        return False
    result = run(command, "-w", "-t", name, "-S", check=False)
    return result.returncode == 0 and only_default_policies(result.stdout)


def only_default_policies(listing: str) -> bool:
    """`iptables -S` output with nothing but `-P CHAIN ACCEPT` lines (no rule, no own chain)."""
    lines = [line.split() for line in listing.splitlines() if line.strip()]
    return all(len(parts) == 3 and parts[0] == "-P" and parts[2] == "ACCEPT" for parts in lines)


def stale_rules(table: str = "filter") -> list[list[str]]:
    """Our iptables rules left by a run that died (found by their comment), as -D argument lists."""
    listed = run("iptables", "-w", "-t", table, "-S", check=False).stdout.splitlines() if shutil.which("iptables") else []
    return [line.split()[1:] for line in listed if line.startswith("-A ") and RULE_COMMENT in line]
