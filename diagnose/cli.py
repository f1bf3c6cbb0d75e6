"""Command line: `diagnose --console boot.log`, `diagnose rules ...` and friends.

Imports stay light here: heavy modules (Jinja2, the cloud SDK, OpenCV, Dask) load only in the
command that needs them, so `diagnose --help` is fast. Every fatal error becomes one line on
stderr and an exit code (see errors.py and the README's table).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from . import __version__
from .errors import EXIT_FAILED, EXIT_OK, DiagnoseError, UsageError

EXIT_NO_EVIDENCE = 6  # the input was empty: an `uncertain` verdict was still produced
MAX_INPUT = 256 * 1024 * 1024  # larger console inputs are refused (see README)

TOP_HELP = """\
diagnose: why a cloud VM will not boot or answer, from its console log and screenshot.

  diagnose --console boot.log [--screenshot screen.jpg] [--format text|json|html] [--out FILE]
  diagnose i-bp1abc... --region cn-hangzhou [--profile NAME] [--save-artifacts DIR]
  diagnose qemu:/run/vm1.qmp [--serial-log FILE]   a local QEMU/KVM VM over QMP
  diagnose libvirt:NAME [--connect URI]            a libvirt domain
  diagnose --from case-dir/                 re-diagnose saved artifacts offline
  diagnose demo [--out DIR]                 the bundled demo region, no account needed
  diagnose scan --region R --out DIR | scan --demo --out DIR | scan diff OLD NEW
  diagnose rules list | rules show ID | rules test
  diagnose eval DIR [--min-accuracy 0.95]    score the rules on a folder of labelled logs
"""


def _main_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="diagnose", description=TOP_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("target", nargs="?",
                   help="an ECS instance id (i-...), qemu:/path/to/qmp.sock or libvirt:NAME")
    p.add_argument("--console", metavar="FILE", help="console/serial log file ('-' = stdin)")
    p.add_argument("--screenshot", metavar="FILE", help="screenshot (PNG or JPEG)")
    p.add_argument("--os", choices=("linux", "windows"), help="operating system, if known")
    p.add_argument("--format", choices=("text", "json", "html"),
                   help="output format (default: text, or from --out's extension)")
    p.add_argument("--out", metavar="FILE", help="write the result to FILE instead of stdout")
    p.add_argument("--rules", metavar="DIR", action="append", default=[],
                   help="an extra rule folder (may be repeated)")
    p.add_argument("--from", dest="case", metavar="DIR",
                   help="a saved case directory (console.log, screenshot, instance.json, ...)")
    ecs = p.add_argument_group("ECS instances")
    ecs.add_argument("--region", help="region id (else ALIBABA_CLOUD_REGION_ID, else the "
                     "profile's region)")
    ecs.add_argument("--profile", help="aliyun CLI profile name")
    ecs.add_argument("--save-artifacts", metavar="DIR",
                     help="also keep what was fetched in DIR (re-read later with --from DIR)")
    ecs.add_argument("--no-screenshot", action="store_true", help="do not fetch a screenshot")
    ecs.add_argument("--endpoint", help=argparse.SUPPRESS)  # tests and the demo: local endpoint
    ecs.add_argument("--timeout", type=float, default=10.0, help="seconds per API call")
    vm = p.add_argument_group("local VMs")
    vm.add_argument("--serial-log", metavar="FILE",
                    help="qemu: targets: the VM's serial log (default: found on QEMU's command "
                         "line)")
    vm.add_argument("--connect", metavar="URI",
                    help="libvirt: targets: the libvirt URI (default: libvirt's default)")
    p.add_argument("--ocr-debug", metavar="DIR",
                   help="write the preprocessed screenshot, text boxes and OCR text to DIR")
    p.add_argument("--engine", choices=("auto", "hyperscan", "python"), default=None,
                   help=argparse.SUPPRESS)
    p.add_argument("--version", action="version", version=f"diagnose {__version__}")
    return p


def _rules_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="diagnose rules", description="inspect and test the rules")
    p.add_argument("--rules", metavar="DIR", action="append", default=[],
                   help="an extra rule folder (may be repeated)")
    sub = p.add_subparsers(dest="cmd", required=True)
    ls = sub.add_parser("list", help="one rule a line")
    ls.add_argument("--category", help="only this category")
    show = sub.add_parser("show", help="one rule in full")
    show.add_argument("rule_id")
    sub.add_parser("test", help="validate every rule and run every example")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] == "rules":
            return _cmd_rules(_rules_parser().parse_args(argv[1:]))
        if argv and argv[0] == "demo":
            return _cmd_demo(_demo_parser().parse_args(argv[1:]))
        if argv and argv[0] == "eval":
            return _cmd_eval(_eval_parser().parse_args(argv[1:]))
        if argv and argv[0] == "scan":
            from .scan.cli import main as scan_main

            return scan_main(argv[1:])
        return _cmd_diagnose(_main_parser().parse_args(argv))
    except DiagnoseError as exc:
        msg = str(exc)
        print(f"diagnose: {msg}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("diagnose: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return EXIT_OK
    except ModuleNotFoundError as exc:
        extra = _extra_for(exc.name or "")
        if extra is None:
            return _internal_error(exc)
        print(f"diagnose: this needs the optional package {exc.name!r}: install it with "
              f"pip install 'diagnose[{extra}]' (scripts/setup.sh does)", file=sys.stderr)
        return UsageError.exit_code
    except Exception as exc:  # noqa: BLE001 - last resort: one line and exit code 4
        return _internal_error(exc)


# Optional dependencies, by top-level module, and the extra that brings them.
_EXTRAS = {"alibabacloud_": "ecs", "darabonba": "ecs", "Tea": "ecs", "qemu": "qemu",
           "libvirt": "libvirt", "distributed": "dask", "dask": "dask"}


def _extra_for(module: str) -> str | None:
    top = module.split(".")[0]
    for prefix, extra in _EXTRAS.items():
        if top == prefix or (prefix.endswith("_") and top.startswith(prefix)):
            return extra
    return None


def _internal_error(exc: BaseException) -> int:
    if os.environ.get("DIAGNOSE_DEBUG") == "1":
        import traceback

        traceback.print_exception(exc)
    first = (str(exc).splitlines() or [""])[0]
    print(f"diagnose: internal error: {type(exc).__name__}: {first} (please report; run "
          "with DIAGNOSE_DEBUG=1 for the traceback)", file=sys.stderr)
    return 4


# ------------------------------------------------------------------------------------------------


def _read_input(path: str, what: str) -> bytes:
    if path == "-":
        data = sys.stdin.buffer.read(MAX_INPUT + 1)
        origin = "standard input"
    else:
        p = Path(path)
        if not p.exists():
            raise UsageError(f"{what} {path}: no such file")
        if p.is_dir():
            raise UsageError(f"{what} {path}: is a directory, not a file")
        try:
            if p.stat().st_size > MAX_INPUT:
                raise UsageError(f"{what} {path}: larger than {MAX_INPUT // 2**20} MiB; pass "
                                 "the tail of the log (e.g. tail -c 64M)")
            with p.open("rb") as fh:
                data = fh.read(MAX_INPUT + 1)
        except PermissionError:
            raise UsageError(f"{what} {path}: permission denied") from None
        except OSError as exc:
            raise UsageError(f"{what} {path}: cannot read ({exc.strerror})") from None
        origin = path
    if len(data) > MAX_INPUT:
        raise UsageError(f"{what} from {origin}: larger than {MAX_INPUT // 2**20} MiB")
    return data


def _looks_binary(data: bytes) -> str | None:
    """Why this is not a console log, or None. Images get a hint to use --screenshot."""
    head = data[:8192]
    if head.startswith(b"\x89PNG") or head.startswith(b"\xff\xd8\xff"):
        return "is an image, not a console log (use --screenshot)"
    for magic, kind in ((b"PK\x03\x04", "a zip archive"), (b"\x1f\x8b", "gzip-compressed"),
                        (b"\x7fELF", "an executable"), (b"%PDF", "a PDF document")):
        if head.startswith(magic):
            return f"is {kind}, not a console log"
    sample = head.replace(b"\x00", b"")
    if not sample:
        return None
    text = sample.decode("utf-8", errors="replace")
    bad = sum(1 for ch in text if ch == "\ufffd" or (ord(ch) < 32 and ch not in "\t\n\r\x1b\b"))
    if bad > max(16, len(text) // 5):
        return "looks like binary data, not a console log"
    return None


def _format(args: argparse.Namespace) -> str:
    fmt = args.format
    if fmt is None and args.out:
        ext = Path(args.out).suffix.lower()
        fmt = {".html": "html", ".htm": "html", ".json": "json"}.get(ext, "text")
    return fmt or "text"


def _cmd_diagnose(args: argparse.Namespace) -> int:
    if args.target or args.case:
        return _cmd_fetch(args)
    if not args.console and not args.screenshot:
        _main_parser().print_help(sys.stderr)
        raise UsageError("nothing to diagnose: give --console FILE and/or --screenshot FILE, "
                         "an instance id, or --from DIR")
    fmt = _format(args)
    console = screenshot = None
    if args.console:
        console = _read_input(args.console, "console log")
        why = _looks_binary(console)
        if why:
            raise UsageError(f"console log {args.console} {why}")
    if args.screenshot:
        screenshot = _read_input(args.screenshot, "screenshot")
        _ocr_debug(args, screenshot)
    from .pipeline import Analyzer, evidence_from_bytes

    analyzer = Analyzer.load([Path(d) for d in args.rules], engine=args.engine)
    name = args.console or args.screenshot
    evidence = evidence_from_bytes(
        console, name="standard input" if name == "-" else os.path.basename(name),
        origin="standard input" if args.console == "-" else (args.console or ""),
        screenshot=screenshot, screenshot_origin=args.screenshot, os_hint=args.os)
    diagnosis = analyzer.analyse(evidence)
    _emit(diagnosis, fmt, args.out, screenshot)
    if console is not None and not console.strip(b"\x00 \t\r\n") and screenshot is None:
        print(f"diagnose: console log {args.console} is empty: verdict uncertain",
              file=sys.stderr)
        return EXIT_NO_EVIDENCE
    return EXIT_FAILED if diagnosis.verdict.status == "failed" else EXIT_OK


def _ocr_debug(args: argparse.Namespace, screenshot: bytes | None) -> None:
    if not args.ocr_debug or screenshot is None:
        return
    from .screen import write_ocr_debug

    for path in write_ocr_debug(screenshot, Path(args.ocr_debug)):
        print(f"ocr-debug: {path}", file=sys.stderr)


def _cmd_fetch(args: argparse.Namespace) -> int:
    """An ECS instance (`i-...`) or a saved case directory (`--from DIR`)."""
    if args.console or args.screenshot:
        raise UsageError("give either an instance id / --from DIR, or --console/--screenshot")
    if args.target and args.case:
        raise UsageError("give either an instance id or --from DIR, not both")
    if args.case:
        from .fetchers.files import load_case

        evidence = load_case(args.case)
    else:
        target = args.target
        if args.serial_log and not target.startswith("qemu:"):
            raise UsageError("--serial-log goes with a qemu: target")
        if args.connect and not target.startswith("libvirt:"):
            raise UsageError("--connect goes with a libvirt: target")
        evidence = _fetch_target(args, target)
        if args.save_artifacts:
            from .fetchers.files import save_case

            save_case(evidence, args.save_artifacts)
            print(f"saved artifacts to {args.save_artifacts}", file=sys.stderr)
    _ocr_debug(args, evidence.screenshot)
    from .pipeline import Analyzer

    analyzer = Analyzer.load([Path(d) for d in args.rules], engine=args.engine)
    diagnosis = analyzer.analyse(evidence)
    _emit(diagnosis, _format(args), args.out, evidence.screenshot)
    return EXIT_FAILED if diagnosis.verdict.status == "failed" else EXIT_OK


def _fetch_target(args: argparse.Namespace, target: str):
    if target.startswith("qemu:"):
        from .fetchers.qemu import fetch_qemu

        return fetch_qemu(target[5:], serial_log=args.serial_log, timeout=args.timeout)
    if target.startswith("libvirt:"):
        from .fetchers.libvirt import fetch_libvirt

        return fetch_libvirt(target[8:], connect=args.connect, timeout=args.timeout)
    if target.startswith("i-"):
        from .fetchers.ecs import fetch_instance

        return fetch_instance(target, region=args.region, profile=args.profile,
                              endpoint=args.endpoint, screenshot=not args.no_screenshot,
                              timeout=args.timeout)
    raise UsageError(f"{target!r} is not a target: give an ECS instance id (i-...), "
                     "qemu:/path/to/qmp.sock or libvirt:NAME; for files use --console FILE / "
                     "--screenshot FILE")


def _demo_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="diagnose demo",
        description="Serve the bundled demo region on a local ECS endpoint (127.0.0.1), "
                    "diagnose every instance through the real SDK path, write the reports.")
    p.add_argument("--out", metavar="DIR", default="demo-reports",
                   help="folder for the reports (default: demo-reports)")
    return p


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    rows = run_demo(Path(args.out))
    width = max((len(r["name"]) for r in rows), default=10)
    for r in rows:
        print(f"{r['instance_id']:<24} {r['name']:<{width}} {r['status']:<11} "
              f"{r['category']:<28} {r['report']}")
    print(f"{len(rows)} instances diagnosed; reports in {args.out}/ (index: "
          f"{Path(args.out) / 'index.html'})")
    return EXIT_OK


def _eval_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="diagnose eval",
        description="Run the real pipeline on every case of a labelled folder (labels.json + "
                    "<id>.log and/or <id>.png|.jpg) and score the verdicts: accuracy per "
                    "category, a confusion table, and every miss with the rule that decided it "
                    "and the last lines of its log.",
        epilog="example: diagnose eval ../shared/corpus/console --min-accuracy 0.95")
    p.add_argument("folder", metavar="DIR", help="a folder with labels.json and the cases")
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.add_argument("--min-accuracy", type=float, metavar="X", default=None,
                   help="exit 1 when the category accuracy is below X (0-1, or a percentage)")
    p.add_argument("--os-from-labels", action="store_true",
                   help="pass each case's labelled platform as --os (default: judge as "
                        "`diagnose --console` does, without an OS hint)")
    p.add_argument("--tail", type=int, default=8, metavar="N",
                   help="log lines shown per miss (default 8)")
    p.add_argument("--rules", metavar="DIR", action="append", default=[],
                   help="an extra rule folder (may be repeated)")
    p.add_argument("--engine", choices=("auto", "hyperscan", "python"), default=None,
                   help=argparse.SUPPRESS)
    return p


def _cmd_eval(args: argparse.Namespace) -> int:
    import json

    from .evaluate import evaluate, load_cases, render_json, render_text
    from .pipeline import Analyzer

    threshold = args.min_accuracy
    if threshold is not None:
        if threshold > 1:
            threshold /= 100.0
        if not 0 <= threshold <= 1:
            raise UsageError("--min-accuracy must be between 0 and 1 (or 0 and 100 %)")
    if args.tail < 0:
        raise UsageError("--tail must be 0 or more")
    folder = Path(args.folder)
    cases = load_cases(folder)
    analyzer = Analyzer.load([Path(d) for d in args.rules], engine=args.engine)
    ev = evaluate(analyzer, cases, folder=str(folder), os_from_labels=args.os_from_labels,
                  tail=args.tail)
    if args.format == "json":
        sys.stdout.write(json.dumps(render_json(ev), indent=2, ensure_ascii=False) + "\n")
    else:
        sys.stdout.write(render_text(ev))
    if threshold is not None and ev.accuracy < threshold:
        print(f"diagnose: accuracy {100 * ev.accuracy:.1f}% is below the minimum "
              f"{100 * threshold:.1f}%", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def _emit(diagnosis, fmt: str, out: str | None, screenshot: bytes | None) -> None:
    if fmt == "json":
        import json

        from .render.json import render_json

        text = json.dumps(render_json(diagnosis), indent=2, ensure_ascii=False) + "\n"
    elif fmt == "html":
        from .render.html import render_html

        text = render_html(diagnosis, screenshot=screenshot)
    else:
        from .render.text import render_text

        text = render_text(diagnosis, color=out is None and sys.stdout.isatty())
    if out:
        try:
            Path(out).write_text(text, encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"cannot write {out}: {exc.strerror}") from None
        print(f"{diagnosis.verdict.status}: {diagnosis.verdict.category} -> {out}")
    else:
        sys.stdout.write(text)


# ------------------------------------------------------------------------------------------------


def _cmd_rules(args: argparse.Namespace) -> int:
    from .rules import load_pack

    pack = load_pack([Path(d) for d in args.rules])
    if args.cmd == "list":
        for r in sorted(pack.rules, key=lambda r: r.id):
            if args.category and r.category != args.category:
                continue
            print(f"{r.id:<48} {r.category:<28} {r.severity:<8} {r.os:<7} {r.source:<7} "
                  f"{r.title}")
        return EXIT_OK
    if args.cmd == "show":
        rule = pack.get(args.rule_id)
        if rule is None:
            raise UsageError(f"no rule with id {args.rule_id!r} (see: diagnose rules list)")
        _show_rule(rule)
        return EXIT_OK
    from .ruletest import run_examples

    failures, checked = run_examples(pack)
    for f in failures:
        print(f)
    print(f"{len(pack.rules)} rules, {checked} examples checked: "
          f"{checked - len(failures)} passed, {len(failures)} failed")
    return EXIT_OK if not failures else EXIT_FAILED


def _show_rule(rule) -> None:
    print(f"id:        {rule.id}")
    print(f"title:     {rule.title}")
    print(f"category:  {rule.category}   status: {rule.status}   severity: {rule.severity}   "
          f"priority: {rule.priority}")
    print(f"applies:   os={rule.os} source={rule.source} stage={rule.stage} match={rule.match}"
          + (" at_end" if rule.at_end else ""))
    print(f"defined:   {rule.file}:{rule.line}")
    for p in rule.patterns:
        print(f"pattern:   {p}")
    for p in rule.ignore:
        print(f"ignore:    {p}")
    for name, desc in rule.fields:
        print(f"field:     {name}: {desc}")
    for step in rule.remediation:
        print(f"remedy:    - {step}")
    for ref in rule.references:
        print(f"reference: {ref}")
    for ex in rule.examples_match:
        print(f"matches:   {ex}")
    for ex in rule.examples_no_match:
        print(f"not:       {ex}")
