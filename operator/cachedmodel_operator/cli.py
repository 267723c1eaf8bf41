"""`cachedmodel-operator run` (the kopf operator) and `cachedmodel-operator render -f FILE` (no cluster)."""
from __future__ import annotations

import argparse
import logging
import os
import sys

import yaml

from cachedmodel_operator import schema
from cachedmodel_operator.builders import render_all
from cachedmodel_operator.resource import CachedModel

LIVENESS_ENDPOINT = "http://0.0.0.0:8080/healthz"


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (rest_config.yaml, redis.conf) as readable literal blocks."""


def _str(dumper: yaml.SafeDumper, value: str):
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def render_text(text: str, namespace: str | None = None, source: str = "<input>") -> str:
    """CachedModel YAML (one or more documents) -> the manifests as multi-document YAML."""
    out = []
    try:
        documents = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as error:
        raise schema.InvalidCachedModel([f"{source}: not valid YAML: {error}"]) from None
    if not documents:
        raise schema.InvalidCachedModel([f"{source}: no CachedModel found"])
    for index, document in enumerate(documents):
        try:
            body = schema.validate(document)
        except schema.InvalidCachedModel as error:
            prefix = f"{source} (document {index + 1})" if len(documents) > 1 else source
            raise schema.InvalidCachedModel([f"{prefix}: {e}" for e in error.errors]) from None
        body["metadata"]["namespace"] = namespace or body["metadata"].get("namespace") or "default"
        for manifest in render_all(CachedModel.from_body(body)):
            out.append(yaml.dump(manifest, Dumper=_Dumper, sort_keys=False, default_flow_style=False))
    return "---\n" + "---\n".join(out)


def cmd_render(args: argparse.Namespace) -> int:
    source = "<stdin>" if args.file == "-" else args.file
    try:
        text = sys.stdin.read() if args.file == "-" else open(args.file, encoding="utf-8").read()
    except OSError as error:
        print(f"error: cannot read {source}: {error.strerror}", file=sys.stderr)
        return 2
    try:
        sys.stdout.write(render_text(text, args.namespace, source))
    except schema.InvalidCachedModel as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


def watched_namespaces(args: argparse.Namespace, environ=os.environ) -> list[str]:
    """--namespace flags, else WATCH_NAMESPACES (comma-separated); empty list = cluster-wide."""
    if args.all_namespaces:
        return []
    if args.namespace:
        return list(args.namespace)
    return [ns.strip() for ns in environ.get("WATCH_NAMESPACES", "").split(",") if ns.strip()]


def cmd_run(args: argparse.Namespace) -> int:
    import kopf  # imported here so that `render` works without touching kopf's machinery

    from cachedmodel_operator import controller

    logging.basicConfig(stream=sys.stdout, level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("kubernetes.client.rest", "urllib3", "aiohttp.access") + (() if args.verbose else ("kopf.objects",)):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    namespaces = watched_namespaces(args)
    registry = kopf.OperatorRegistry()
    controller.register(registry)
    logging.getLogger("cachedmodel_operator").info(
        "starting: namespaces=%s liveness=%s", ",".join(namespaces) or "<cluster-wide>", args.liveness)
    kopf.run(registry=registry, standalone=not args.peering, peering_name=args.peering,
             namespaces=namespaces, clusterwide=not namespaces, liveness_endpoint=args.liveness or None)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cachedmodel-operator", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    render = sub.add_parser("render", help="print the manifests of a CachedModel file (no cluster needed)")
    render.add_argument("-f", "--file", required=True, help="CachedModel YAML file, or - for stdin")
    render.add_argument("-n", "--namespace", help="namespace of the manifests (default: the file's, else default)")
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
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
