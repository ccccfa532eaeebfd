"""The `qa` command: index a corpus, ask questions, serve the chat page and API, evaluate.

Heavy libraries (torch, faiss, gradio) are imported only inside the subcommand that
needs them, so `qa --help` answers at once. Errors go to stderr with a non-zero exit:
2 for bad input (usage, question, settings), 1 for anything else that went wrong.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from qa.training.command import add_reader_parser

EPILOG = """examples:
  qa index                                  build/update the index of ./seeds
  qa ask "Does the US support Taiwan independence?"
  qa ask --json "Who met Xi Jinping?"       the answer object as JSON
  qa serve --port 7860                      chat page + JSON API on http://127.0.0.1:7860
  qa eval benchmarks/questions/seeds.jsonl --out out/eval
  qa eval dev-v2.0.json                     a SQuAD file, asked of its own articles
  qa index --status                         what the index is (plain/sharded, counts, ...)

Every tunable also reads a QA_* environment variable (QA_MODEL, QA_TOP_K, QA_HOME, ...);
see docs/usage.md."""


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--corpus", metavar="DIR",
                   help="folder of .txt/.md/.html/.pdf/.docx documents "
                   "(default: the project's seeds/)")
    p.add_argument("--index", metavar="DIR",
                   help="index folder (default: derived from the corpus, under "
                        "~/.cache/cited-qa; QA_INDEX applies only without --corpus)")
    p.add_argument("--model", metavar="NAME_OR_PATH",
                   help="sentence-transformers model: local folder or hub name "
                        "(default: all-MiniLM-L6-v2, bundled offline)")
    p.add_argument("--uploads", metavar="DIR",
                   help="where documents uploaded through the page and the API are kept, "
                        "indexed with the corpus as uploads/<name> (default: under "
                        "~/.cache/cited-qa/uploads, per corpus)")
    p.add_argument("-v", "--verbose", action="store_true", help="log more detail")


def _ray_options(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                   help=f"{what}. ADDRESS as ray.init takes it ('auto', HOST:PORT, "
                        "ray://...); without it $RAY_ADDRESS, else a local Ray. Needs "
                        "pip install -e '.[ray]'")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qa",
        description="Answer questions from a folder of articles with verbatim, cited quotes.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("index", help="build or update the index of a corpus",
                       description="Read, clean, chunk and embed every .txt, .md, .html, "
                       ".pdf and .docx file under the corpus folder. Incremental: only new "
                       "and changed files are embedded; deleted files are dropped.")
    _common(p)
    p.add_argument("--rebuild", action="store_true", help="re-embed everything")
    p.add_argument("--chunk-tokens", type=int, metavar="N", help="target chunk size (tokens)")
    p.add_argument("--chunk-overlap", type=int, metavar="N", help="chunk overlap (tokens)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    _ray_options(p, "build on a Ray cluster (Ray Data), as N shards; docs/cluster.md")
    p.add_argument("--shards", type=int, metavar="N",
                   help="with --ray: shards to write (default: QA_SHARDS, else one per "
                        "256 MB of corpus)")
    p.add_argument("--status", nargs="?", const="", default=None, metavar="DIR",
                   help="build nothing: say what the index at DIR (default: --index, or "
                        "the corpus's) is: plain or sharded, shards, documents, chunks, "
                        "model, when and by which version it was built, and whether this "
                        "program can read it (exit 1 when it can't)")
    p.add_argument("--json", action="store_true", help="with --status: as a JSON object")
    p.set_defaults(func=cmd_index)

    p = sub.add_parser("ask", help="answer one question with citations",
                       description="Answer a question with a sentence quoted verbatim from "
                       "the corpus, or say that the documents don't answer it. Builds the "
                       "index first if there is none.")
    p.add_argument("question", help="the question (in quotes)")
    _common(p)
    p.add_argument("--json", action="store_true", help="print the answer object as JSON")
    p.add_argument("--top-k", type=int, metavar="N", help="passages to return (default 5)")
    _ray_options(p, "answer on a Ray cluster (a Ray task loads the index and answers; "
                    "the index is built there first if stale); docs/cluster.md")
    p.set_defaults(func=cmd_ask)

    p = sub.add_parser("serve", help="start the chat page and JSON API",
                       description="Serve the chat page at / and the JSON API under /api "
                       "(docs at /docs) from one process. Builds the index first if needed.")
    _common(p)
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1); any other than loopback "
                        "needs a key (QA_API_KEY or --api-key-file) or --insecure-no-key")
    p.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    p.add_argument("--api-key-file", metavar="FILE",
                   help="a file whose first line is the key every route but /api/health "
                        "asks for (Authorization: Bearer, or the page's login); "
                        "QA_API_KEY gives it directly")
    p.add_argument("--insecure-no-key", action="store_true", default=None,
                   help="serve a non-loopback --host without a key (anyone who reaches "
                        "the port can read, upload and delete documents)")
    p.add_argument("--max-upload-mb", type=int, metavar="N",
                   help="largest upload request in MiB (default 50); larger gets 413")
    p.add_argument("--upload-wait-kb", type=int, metavar="N",
                   help="uploads above N KiB are indexed as a job: 202 and a status "
                        "route (default 512)")
    p.add_argument("--auth-failures", type=int, metavar="N",
                   help="wrong keys one address may send per --auth-window (default 10)")
    p.add_argument("--auth-window", type=int, metavar="SECONDS",
                   help="the window of --auth-failures (default 60)")
    p.add_argument("--session-hours", type=int, metavar="N",
                   help="how long a login of the chat page lasts (default 12)")
    _ray_options(p, "serve from a Ray cluster (Ray Serve: a deployment per shard, "
                    "answerer replicas behind its proxy); docs/cluster.md")
    p.add_argument("--replicas", type=int, default=2, metavar="N",
                   help="with --ray: answerer replicas (default 2)")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("eval", help="score the assistant on a question set",
                       description="Run every question of a question set (JSON lines, or "
                       "SQuAD 1.1/2.0 JSON, asked of the articles it carries unless --corpus "
                       "names a folder), write results.jsonl, metrics.json, report.md, a plot "
                       "and report.html to --out, and print a summary (SQuAD's exact match "
                       "and F1 among the figures).")
    p.add_argument("questions", help="question set (.jsonl, or a SQuAD .json file)")
    _common(p)
    p.add_argument("--out", metavar="DIR", default="out/eval",
                   help="output folder (default out/eval)")
    p.add_argument("--fail-under", action="append", default=[], metavar="METRIC=VALUE",
                   help="exit 1 when a metric is below VALUE (or above, for metrics where "
                        "lower is better); repeatable, e.g. accuracy=0.9")
    p.add_argument("--limit", type=int, metavar="N", help="only the first N questions")
    p.add_argument("--run-file", metavar="PATH",
                   help="also write the retrieval as a TREC run file (qid Q0 docid rank "
                        "score tag; qid the question's id, docid the source file, each "
                        "file once at its best passage) and the gold sources as qrels "
                        "beside it (PATH.qrels), to score with trec_eval, ir_measures or "
                        "ranx; docs/usage.md")
    p.add_argument("--qrels-file", metavar="PATH",
                   help="with --run-file: where the qrels go (default: PATH.qrels)")
    _ray_options(p, "answer the questions on a Ray cluster (Ray Data; each worker loads "
                    "every shard); the same outputs, with questions/s; docs/cluster.md")
    p.add_argument("--workers", type=int, metavar="N",
                   help="with --ray: answering workers, one CPU each (default: the "
                        "cluster's CPUs less one, at most one per 32 questions)")
    p.set_defaults(func=cmd_eval)

    add_reader_parser(sub)
    return parser


def _settings(args: argparse.Namespace, **extra):
    from qa.settings import Settings

    overrides = {"corpus": args.corpus, "index": args.index, "model": args.model,
                 "uploads": getattr(args, "uploads", None), **extra}
    settings = Settings.load(**overrides)
    if args.corpus and not args.index and settings.index is not None:
        # QA_INDEX belongs to QA_CORPUS: another corpus gets its own default index, so
        # `qa index --corpus OTHER` can never overwrite the index of the usual corpus
        settings = settings.replace(index=None)
    if args.corpus and not getattr(args, "uploads", None) and settings.uploads is not None:
        settings = settings.replace(uploads=None)  # likewise QA_UPLOADS
    return settings


def _progress_wanted(args) -> bool:
    return not getattr(args, "quiet", False) and sys.stderr.isatty() or bool(
        os.environ.get("QA_PROGRESS"))


def cmd_index(args: argparse.Namespace) -> int:
    from embeddings.indexer import survey
    from qa.engine import ensure_index

    settings = _settings(args, chunk_tokens=args.chunk_tokens, chunk_overlap=args.chunk_overlap)
    if args.status is not None:
        return _index_status(args, settings)
    if args.json:
        raise ValueError("--json goes with --status")
    if args.ray is not None:
        from qa.cluster.build import build_on_ray

        if args.shards is not None and args.shards < 1:
            raise ValueError("--shards must be at least 1")
        print(f"indexing {settings.corpus} -> {settings.index_dir} on Ray", file=sys.stderr)
        report = build_on_ray(settings, address=args.ray or None, shards=args.shards,
                              rebuild=args.rebuild, progress=not args.quiet)
        print(report.summary())
        return 0
    # a missing corpus is reported first, before any "indexing" line or folder
    surveyed = survey(settings.corpus, settings.index_dir, settings.index_config(),
                      settings.exclude, settings.uploads_dir)
    print(f"indexing {settings.corpus} -> {settings.index_dir}", file=sys.stderr)
    report = ensure_index(settings, progress=not args.quiet, rebuild=args.rebuild,
                          surveyed=surveyed)
    if report.rebuilt and report.rebuilt != "rebuild requested":
        print(f"rebuilt the whole index: {report.rebuilt}", file=sys.stderr)
    print(report.summary())
    return 0


def _index_status(args: argparse.Namespace, settings) -> int:
    from pathlib import Path

    from qa.retrieval.folder import describe, status_text

    if args.ray is not None or args.rebuild:
        raise ValueError("--status builds nothing: leave out --ray and --rebuild")
    found = describe(Path(args.status).expanduser() if args.status else settings.index_dir)
    print(json.dumps(found, indent=2, ensure_ascii=False) if args.json
          else status_text(found))
    if found["problem"]:
        print(f"qa index: error: {found['problem']}", file=sys.stderr)
        return 1
    return 0


def cmd_ask(args: argparse.Namespace) -> int:
    from qa.engine import Assistant, clean_question

    settings = _settings(args, top_k=args.top_k)  # a bad --top-k fails here, before loading
    question = clean_question(args.question, settings.max_question_chars)
    if args.ray is not None:
        from qa.cluster.answering import ask_on_ray

        answer = ask_on_ray(settings, question, address=args.ray or None)
    else:
        assistant = Assistant.load(settings=settings, progress=_progress_wanted(args))
        answer = assistant.ask(question)
    if args.json:
        print(json.dumps(answer.to_dict(), ensure_ascii=False, indent=2))
    else:
        print(answer.to_text(bold=sys.stdout.isatty()))
    return 0


def is_loopback(host: str) -> bool:
    """Whether every address `host` names is this machine's loopback (127.0.0.0/8, ::1)."""
    import ipaddress
    import socket

    try:
        infos = socket.getaddrinfo(host, None)
    except (socket.gaierror, UnicodeError):
        return False  # an unknown name: serve() reports it
    addresses = {info[4][0].split("%")[0] for info in infos}
    return bool(addresses) and all(ipaddress.ip_address(a).is_loopback for a in addresses)


def cmd_serve(args: argparse.Namespace) -> int:
    settings = _settings(args, api_key_file=args.api_key_file,
                         insecure_no_key=args.insecure_no_key,
                         max_upload_mb=args.max_upload_mb, upload_wait_kb=args.upload_wait_kb,
                         auth_failures=args.auth_failures, auth_window=args.auth_window,
                         session_hours=args.session_hours)
    if not settings.api_key and not settings.insecure_no_key and not is_loopback(args.host):
        print(f"qa serve: error: --host {args.host} is reachable from other machines and "
              "no key is set: set QA_API_KEY=<a long random key> or --api-key-file FILE "
              "(or --insecure-no-key to serve it open)", file=sys.stderr)
        return 2
    if args.ray is not None:
        from qa.cluster.serve import serve_on_ray

        if args.replicas < 1:
            raise ValueError("--replicas must be at least 1")
        serve_on_ray(settings, address=args.ray or None, host=args.host,
                     port=args.port, replicas=args.replicas)
        return 0
    from qa.api import serve

    serve(settings, host=args.host, port=args.port)
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from qa.evaluation.command import run_cli

    if args.ray is None:
        return run_cli(args, _settings(args))
    from qa.cluster.answering import eval_on_ray

    if args.workers is not None and args.workers < 1:
        raise ValueError("--workers must be at least 1")
    return run_cli(args, _settings(args), runner=lambda settings, questions: eval_on_ray(
        settings, questions, address=args.ray or None, workers=args.workers,
        progress=sys.stderr.isatty()))


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s: %(message)s" if not args.verbose
                        else "%(asctime)s %(name)s %(levelname)s: %(message)s")
    logging.getLogger("embeddings").setLevel(logging.INFO)
    for noisy in ("httpx", "sentence_transformers", "transformers", "urllib3", "faiss"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    from qa.errors import BadInput, Busy, Unusable

    try:
        return args.func(args)
    except Unusable as exc:  # broken or stale files: the message names the fix
        print(f"qa {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except Busy as exc:
        print(f"qa {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except (BadInput, ValueError) as exc:  # bad input: a question, a flag, a path
        print(f"qa {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"qa {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
