"""`cachedmodel-operator run` (the kopf operator) and `cachedmodel-operator render -f FILE ...` (no cluster)."""
from __future__ import annotations

import argparse
import asyncio
import codecs
import logging
import os
import re
import sys

import yaml

from cachedmodel_operator import schema, settings
from cachedmodel_operator.builders import render_all
from cachedmodel_operator.resource import CachedModel

LIVENESS_ENDPOINT = "http://0.0.0.0:8080/healthz"


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (rest_config.yaml, redis.conf) as readable literal blocks."""


def _str(dumper: yaml.SafeDumper, value: str):
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


# -- reading a CachedModel file: bounded, strict, and with one clear message for every way it can be wrong
MAX_FILE_BYTES = 3 * 1024 * 1024  # the API server refuses request bodies above 3 MiB
MAX_DEPTH = 32  # a CachedModel nests at most 8 levels (spec.model.env[0].valueFrom.secretKeyRef.key)
MAX_NODES = 50_000  # bounds time (~30 us each) and memory (~1 KiB each); a big CachedModel has ~1,000
MAX_DOCUMENTS = 100  # CachedModels rendered from one file (each takes a few milliseconds)
MAX_INT_DIGITS = 100  # far beyond int64; Python refuses to convert more than 4,300 digits anyway
MAX_REPORTED = 20  # error lines printed; the rest are counted
_JSON_TAGS = {f"tag:yaml.org,2002:{name}" for name in ("str", "int", "float", "bool", "null", "map", "seq")}
# JSON has no timestamps, and `=` (YAML 1.1's value key) is just a string there: both stay plain strings
_STRING_ONLY = {"tag:yaml.org,2002:timestamp", "tag:yaml.org,2002:value"}
# Characters YAML forbids (PyYAML's Reader check): found here first to report them by line and column.
_NON_PRINTABLE = re.compile("[^\x09\x0A\x0D\x20-\x7E\x85\xA0-\uD7FF\uE000-\uFFFD\U00010000-\U0010FFFF]")
_BOMS = [(codecs.BOM_UTF32_LE, "UTF-32"), (codecs.BOM_UTF32_BE, "UTF-32"),  # before UTF-16: FF FE 00 00
         (codecs.BOM_UTF16_LE, "UTF-16"), (codecs.BOM_UTF16_BE, "UTF-16")]


class _Refused(yaml.YAMLError):
    """Something the loader refuses, at a field path and a position of the file."""

    def __init__(self, path: list | str, message: str, mark):
        super().__init__(message)
        self.path = path if isinstance(path, str) else list(path)  # a copy: the loader pops its path
        self.message, self.mark = message, mark

    def __str__(self) -> str:
        path = self.path if isinstance(self.path, str) else schema.field_path(self.path)
        return f"{path}: {self.message} (line {self.mark.line + 1}, column {self.mark.column + 1})"


class StrictLoader(yaml.SafeLoader):
    """SafeLoader that gives what the API server decodes (JSON), refusing what it refuses and what could blow up.

    Duplicate keys are refused: kubectl and PyYAML silently keep the last one, so a repeated key changes the
    object unseen; aliases and merge keys are refused, so that no alias bomb can expand (kubectl takes
    aliases, within a budget: writing the value out is the portable form);
    nesting depth and node count are limited before PyYAML's recursive composer could exhaust the stack or
    memory; keys must be strings and tags JSON types; timestamps and `=` stay strings, as in JSON.
    """

    yaml_implicit_resolvers = {first: [(tag, regexp) for tag, regexp in resolvers if tag not in _STRING_ONLY]
                               for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}

    def __init__(self, stream: str):
        super().__init__(stream)
        self._path: list = []
        self._nodes = 0

    def compose_node(self, parent, index):
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            raise _Refused(self._path, f"YAML alias *{event.anchor[:40]} is not allowed: "
                           f"write the value out", event.start_mark)
        if parent is None:
            part = None
        elif index is None:
            part = "<key>"
        elif isinstance(index, yaml.Node):
            part = index.value
        else:
            part = index
        self._nodes += 1
        if self._nodes > MAX_NODES:
            raise _Refused(self._path, f"more than {MAX_NODES} YAML nodes in the file: too big for a CachedModel",
                           event.start_mark)
        if part is not None:
            self._path.append(part)
        try:
            if len(self._path) > MAX_DEPTH:
                raise _Refused(schema.field_path(self._path[:8]) + "...", f"nested deeper than {MAX_DEPTH} levels",
                               event.start_mark)
            node = super().compose_node(parent, index)
            if node.tag not in _JSON_TAGS and part != "<key>":  # keys: checked by compose_mapping_node
                raise _Refused(self._path, f"tag {schema.short(node.tag, 60)} is not allowed (only strings, "
                               f"numbers, booleans, null, mappings and lists)", node.start_mark)
            if node.tag.endswith(":int") and len(node.value) > MAX_INT_DIGITS:
                raise _Refused(self._path, f"integer of {len(node.value)} digits is too large", node.start_mark)
            return node
        finally:
            if part is not None:
                self._path.pop()

    def compose_mapping_node(self, anchor):
        start = self.get_event()
        tag = start.tag
        if tag is None or tag == "!":
            tag = self.resolve(yaml.MappingNode, None, start.implicit)
        node = yaml.MappingNode(tag, [], start.start_mark, None, flow_style=start.flow_style)
        if anchor is not None:
            self.anchors[anchor] = node
        first_line: dict[str, int] = {}
        while not self.check_event(yaml.MappingEndEvent):
            key = self.compose_node(node, None)
            if key.tag == "tag:yaml.org,2002:merge":
                raise _Refused(self._path, "YAML merge keys (<<) are not allowed: write the fields out",
                               key.start_mark)
            if not isinstance(key, yaml.ScalarNode) or key.tag != "tag:yaml.org,2002:str":
                shown = key.value if isinstance(key, yaml.ScalarNode) else "a " + key.id
                raise _Refused(self._path, f"keys must be strings, got {schema.short(shown, 40)} (quote it)",
                               key.start_mark)
            if key.value in first_line:
                raise _Refused(self._path + [key.value], f"duplicate key (first at line {first_line[key.value]})",
                               key.start_mark)
            first_line[key.value] = key.start_mark.line + 1
            node.value.append((key, self.compose_node(node, key)))
        node.end_mark = self.get_event().end_mark
        return node


# go-yaml, which kubectl decodes YAML with, reads 1e12, 1E+12 and 2.5e3 as numbers; YAML 1.1 (PyYAML) wants a dot and
# a signed exponent and would read them as strings, so they are numbers here too (then checked like any number)
StrictLoader.add_implicit_resolver("tag:yaml.org,2002:float",
                                   re.compile(r"^[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)[eE][-+]?[0-9]+$"),
                                   list("-+0123456789."))


def _position(text, offset: int) -> str:
    newline = "\n" if isinstance(text, str) else b"\n"
    line = text.count(newline, 0, offset) + 1
    return f"line {line}, column {offset - (text.rfind(newline, 0, offset) + 1) + 1}"


def decode(data: bytes, source: str) -> str:
    """UTF-8 text, with or without a byte order mark; any other encoding is refused, saying which it looks like."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            raise schema.InvalidCachedModel([f"{source}: file is {encoding} text (byte order mark {bom.hex(' ')}): "
                                             f"save it as UTF-8"])
    data = data.removeprefix(codecs.BOM_UTF8)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise schema.InvalidCachedModel([f"{source}: {_position(data, error.start)}: not UTF-8 text (byte "
                                         f"0x{data[error.start]:02x}); save the file as UTF-8"]) from None
    bad = _NON_PRINTABLE.search(text)
    if bad and bad.group() == "\x00":
        raise schema.InvalidCachedModel([f"{source}: {_position(text, bad.start())}: NUL character: not a UTF-8 text "
                                         f"file (binary, or UTF-16/32 without a byte order mark?)"])
    if bad:
        raise schema.InvalidCachedModel([f"{source}: {_position(text, bad.start())}: control character "
                                         f"U+{ord(bad.group()):04X} is not allowed in YAML"])
    return text


def load_documents(text: str, source: str = "<input>") -> list:
    """The non-empty YAML documents of `text`, loaded by StrictLoader; errors name the line and the field."""
    loader = StrictLoader(text)
    documents = []
    try:
        while loader.check_node():
            document = loader.construct_document(loader.get_node())
            if document is None:
                continue
            if len(documents) == MAX_DOCUMENTS:
                raise schema.InvalidCachedModel([f"{source}: more than {MAX_DOCUMENTS} documents: render at most "
                                                 f"{MAX_DOCUMENTS} CachedModels per file"])
            documents.append(document)
    except _Refused as error:
        raise schema.InvalidCachedModel([f"{source}: {error}"]) from None
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        context = f" ({error.context})" if error.context and error.problem else ""
        problem = error.problem or error.context or "syntax error"
        raise schema.InvalidCachedModel([f"{source}: not valid YAML: {where}{problem}{context}"]) from None
    except yaml.YAMLError as error:
        raise schema.InvalidCachedModel([f"{source}: not valid YAML: {schema.short(str(error), 200)}"]) from None
    finally:
        loader.dispose()
    return documents


def render_manifests(text: str, namespace: str | None = None, source: str = "<input>", secret: bool = True,
                     seen: dict | None = None) -> list[dict]:
    """CachedModel YAML (one or more documents) -> the manifests, in document order. `secret=False` leaves out
    the generated Redis password Secret (`--no-secret`); `seen` ((namespace, name) -> where) spans several
    files, so that two CachedModels of one name, whose manifests would overwrite each other, are refused."""
    if namespace is not None:
        reason = schema.dns_1123_label_error(namespace)
        if reason:
            raise schema.InvalidCachedModel([f"--namespace: {reason}"])
    documents = load_documents(text, source)
    if not documents:
        raise schema.InvalidCachedModel([f"{source}: no CachedModel found"])
    seen = {} if seen is None else seen
    out = []
    for index, document in enumerate(documents):
        prefix = f"{source} (document {index + 1})" if len(documents) > 1 else source
        try:
            body = schema.validate(document)
        except schema.InvalidCachedModel as error:
            raise schema.InvalidCachedModel([f"{prefix}: {e}" for e in error.errors]) from None
        body["metadata"]["namespace"] = namespace or body["metadata"].get("namespace") or "default"
        key = (body["metadata"]["namespace"], body["metadata"]["name"])
        if key in seen:
            raise schema.InvalidCachedModel([f"{prefix}: metadata.name: CachedModel {key[0]}/{key[1]} is also in "
                                             f"{seen[key]}: their manifests would overwrite each other"])
        seen[key] = prefix
        cm = CachedModel.from_body(body)
        out += [manifest for manifest in render_all(cm)
                if secret or (manifest["kind"], manifest["metadata"]["name"]) != ("Secret", cm.redis_secret_name)]
    return out


def dump(manifests: list[dict]) -> str:
    """Manifests as one multi-document YAML stream."""
    return "---\n" + "---\n".join(yaml.dump(manifest, Dumper=_Dumper, sort_keys=False, default_flow_style=False)
                                   for manifest in manifests)


def render_text(text: str, namespace: str | None = None, source: str = "<input>", secret: bool = True) -> str:
    """CachedModel YAML (one or more documents) -> the manifests as multi-document YAML."""
    return dump(render_manifests(text, namespace, source, secret))


def password_note(manifests: list[dict]) -> str | None:
    """What render says on stderr when it prints generated Redis password Secrets (None: it prints none)."""
    secrets = [(m["metadata"]["namespace"], m["metadata"]["name"]) for m in manifests if m["kind"] == "Secret"]
    if not secrets:
        return None
    several = len(secrets) > 1
    namespace, name = secrets[0]
    return (f"note: the Secret{'s' if several else ''} {', '.join(f'{ns}/{n}' for ns, n in secrets)} "
            f"hold{'' if several else 's'} a new random Redis password on every render: applying another render "
            f"replaces it, and pods started after that no longer match the running ones (the operator instead "
            f"creates the Secret once and never rewrites it). For output that is the same on every run (GitOps, "
            f"repeated applies), render with --no-secret and create the Secret once yourself"
            f"{' (one per CachedModel)' if several else ''}: kubectl create secret generic {name} -n {namespace} "
            f"--from-literal=password=\"$(openssl rand -hex 32)\"")


def _print_errors(errors: list[str]) -> None:
    """One line per problem, at most MAX_REPORTED, with control characters from the file escaped."""
    for error in errors[:MAX_REPORTED]:
        line = "".join(c if c.isprintable() else repr(c)[1:-1] for c in error)
        print(f"error: {line[:1000]}", file=sys.stderr)
    if len(errors) > MAX_REPORTED:
        print(f"error: ... and {len(errors) - MAX_REPORTED} more problems", file=sys.stderr)


def _read(path: str) -> bytes:
    if path == "-":
        return sys.stdin.buffer.read(MAX_FILE_BYTES + 1)
    with open(path, "rb") as stream:
        return stream.read(MAX_FILE_BYTES + 1)


def cmd_render(args: argparse.Namespace) -> int:
    """Every -f in order (like kubectl): all files are read and checked before anything is printed."""
    if args.namespace is not None and schema.dns_1123_label_error(args.namespace):
        _print_errors([f"--namespace: {schema.dns_1123_label_error(args.namespace)}"])
        return 2
    paths = args.file
    if paths.count("-") > 1:
        _print_errors(["-f -: standard input can be read only once"])
        return 2
    inputs = []
    for path in paths:
        source = "<stdin>" if path == "-" else path
        try:
            data = _read(path)
        except OSError as error:
            _print_errors([f"cannot read {source}: {error.strerror or error}"])
            return 2
        if len(data) > MAX_FILE_BYTES:
            _print_errors([f"{source}: file larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB (the API server's "
                           f"limit for a request)"])
            return 1
        inputs.append((source, data))
    manifests, errors, seen = [], [], {}
    for source, data in inputs:
        try:
            manifests += render_manifests(decode(data, source), args.namespace, source, not args.no_secret, seen)
        except schema.InvalidCachedModel as error:
            errors += error.errors
    if errors:
        _print_errors(errors)
        return 1
    output = dump(manifests)
    note = password_note(manifests)
    if note:
        print(note, file=sys.stderr)
    sys.stdout.write(output)
    sys.stdout.flush()
    return 0


def watched_namespaces(args: argparse.Namespace, environ=os.environ) -> list[str]:
    """--namespace flags, else WATCH_NAMESPACES (comma-separated); empty list = cluster-wide."""
    if args.all_namespaces:
        return []
    if args.namespace:
        return list(args.namespace)
    return [ns.strip() for ns in environ.get("WATCH_NAMESPACES", "").split(",") if ns.strip()]


def cmd_run(args: argparse.Namespace) -> int:
    try:  # every CACHEDMODEL_* setting, before anything starts: one line naming a bad one, exit 2
        config = settings.from_env(os.environ)
    except settings.SettingsError as error:
        _print_errors([str(error)])
        return 2
    import kopf  # imported here so that `render` works without touching kopf's machinery

    from cachedmodel_operator import controller
    from cachedmodel_operator.scraper import Scraper

    controller.RESYNC_SECONDS = config.resync_seconds
    controller.CONTROLLER.scraper = Scraper(**config.scraper())

    logging.basicConfig(stream=sys.stdout, level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("kubernetes.client.rest", "urllib3", "aiohttp.access") + (() if args.verbose else ("kopf.objects",)):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    namespaces = watched_namespaces(args)
    registry = kopf.OperatorRegistry()
    controller.register(registry)
    logging.getLogger("cachedmodel_operator").info(
        "starting: namespaces=%s liveness=%s", ",".join(namespaces) or "<cluster-wide>", args.liveness)
    options = dict(registry=registry, standalone=not args.peering, peering_name=args.peering, namespaces=namespaces,
                   clusterwide=not namespaces, liveness_endpoint=args.liveness or None)
    if not config.lease_name:
        kopf.run(**options)
        return 0
    from cachedmodel_operator import leader  # several replicas: only the Lease's holder runs the handlers

    elector = leader.elect(config, args.liveness)
    if elector is None:
        return 0  # asked to stop while waiting as a standby
    try:
        asyncio.run(leader.operate_while_leading(elector, kopf.operator, **options))
    finally:
        elector.release()
    return 1 if elector.lost.is_set() else 0  # lost: exit, so that the pod restarts as a standby


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cachedmodel-operator", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    render = sub.add_parser("render", help="print the manifests of CachedModel files (no cluster needed)")
    render.add_argument("-f", "--file", "--filename", action="append", required=True,
                        help="CachedModel YAML file, or - for stdin; repeat for several files, rendered in order "
                             "(as kubectl apply takes them)")
    render.add_argument("-n", "--namespace", help="namespace of the manifests (default: the file's, else default)")
    render.add_argument("--no-secret", action="store_true",
                        help="leave out the <name>-redis-auth Secret with its freshly generated Redis password, so "
                             "that the output is the same on every run; create that Secret (key: password) yourself")
    render.set_defaults(func=cmd_render)
    run = sub.add_parser("run", help="run the operator (kopf) against the current cluster")
    run.add_argument("-n", "--namespace", action="append", help="watch this namespace (repeatable); "
                     "default: $WATCH_NAMESPACES (comma-separated), else all namespaces")
    run.add_argument("-A", "--all-namespaces", action="store_true", help="watch every namespace")
    run.add_argument("--liveness", default=os.environ.get("LIVENESS_ENDPOINT", LIVENESS_ENDPOINT),
                     help=f"kopf liveness endpoint (default {LIVENESS_ENDPOINT}; empty to disable)")
    run.add_argument("--peering", default=os.environ.get("KOPF_PEERING") or None,
                     help="kopf peering object name (needs kopf's peering CRDs); default: standalone")
    run.add_argument("-v", "--verbose", action="store_true")
    run.set_defaults(func=cmd_run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.func is not cmd_render:
        return args.func(args)
    try:
        return cmd_render(args)
    except BrokenPipeError:  # `render ... | head`: the reader left; exit like a process killed by SIGPIPE
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so that the exit flush fails no more
        return 141
    except KeyboardInterrupt:
        return 130
    except Exception as error:  # a bug of render's, not of the file: one line for the user, never a traceback
        print(f"error: render failed unexpectedly ({type(error).__name__}: {str(error)[:200]}); "
              f"please report this with the file", file=sys.stderr)
        return 70


if __name__ == "__main__":
    sys.exit(main())
