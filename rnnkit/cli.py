"""The `rnnkit` command.

Each command group is a function `add_<group>_commands(subparsers)` that adds its parsers and sets
`func=<handler>` on them; a handler takes the parsed arguments and returns an exit code. To add a command,
write such a function and append it to COMMANDS. Errors the user can fix (ValueError, OSError, DatasetError)
print `error: ...` to stderr and exit with code 2, without a traceback.
"""

from __future__ import annotations

import argparse
import sys

from rnnkit import __version__
from rnnkit.data import datasets
from rnnkit.files import write_json
from rnnkit.train import TrainingError


class FORMATTER(argparse.ArgumentDefaultsHelpFormatter):
    """Shows "(default: ...)" after an option's help unless the help already says its default or there is
    none to show (None, False: the option is off unless given)."""

    def _get_help_string(self, action):
        help = action.help or ""
        if "default" in help or action.default is None or action.default is False:
            return help
        return super()._get_help_string(action)


USER_ERRORS = (ValueError, OSError, datasets.DatasetError, TrainingError)


def add_parser(subparsers, name: str, help: str, **kwargs) -> argparse.ArgumentParser:
    """A subcommand parser that shows defaults in --help."""
    return subparsers.add_parser(name, help=help, description=help, formatter_class=FORMATTER, **kwargs)


# ----------------------------------------------------------------------------------------- rnnkit data


def cmd_data_list(args) -> int:
    rows = [(d.name, d.size, d.license, d.description) for d in datasets.list_datasets()]
    width = max(len(r[0]) for r in rows)
    for name, size, license, description in rows:
        print(f"{name:<{width}}  {description}")
        print(f"{'':<{width}}  size: {size}; license: {license}")
    return 0


def cmd_data_fetch(args) -> int:
    for name in args.names:
        print(datasets.fetch(name, args.home, verbose=True))
    return 0


def add_data_commands(subparsers) -> None:
    data = add_parser(subparsers, "data", "datasets: list the registry, fetch into the cache")
    sub = data.add_subparsers(dest="data_command", metavar="COMMAND", required=True)
    p = add_parser(sub, "list", "list the registered datasets")
    p.set_defaults(func=cmd_data_list)
    p = add_parser(sub, "fetch", "download, verify and cache datasets; print their cache folders")
    p.add_argument("names", nargs="+", metavar="NAME", help="dataset name (see `rnnkit data list`)")
    p.add_argument("--home", default=str(datasets.home()), help="cache folder ($RNNKIT_HOME, else ~/.cache/rnnkit)")
    p.set_defaults(func=cmd_data_fetch)


# ----------------------------------------------------------------------------------------- rnnkit train lm


def cmd_train_lm(args) -> int:
    from rnnkit.tasks import lm

    result = lm.train_lm(
        dataset=args.dataset, data=args.data, valid=args.valid, level=args.level, lower=args.lower,
        min_freq=args.min_freq, max_vocab=args.max_vocab, cell=args.cell, layers=args.layers, hidden=args.hidden,
        embedding=args.embedding, dropout=args.dropout, tie_weights=args.tie, engine=args.engine,
        device=args.device, dtype=args.dtype, batch_size=args.batch_size, bptt=args.bptt, out=args.out,
        resume=args.resume, epochs=args.epochs, lr=args.lr, optimizer=args.optimizer,
        weight_decay=args.weight_decay, momentum=args.momentum, clip=args.clip or None, schedule=args.schedule,
        warmup_steps=args.warmup_steps, patience=args.patience, eval_every=args.eval_every,
        checkpoint_every=args.checkpoint_every, max_steps=args.max_steps, log_every=args.log_every,
        seed=args.seed, progress=not args.no_progress)
    state = result.state
    print(f"trained {state.step} steps; best validation loss {state.best_loss:.4f} at step {state.best_step}")
    print(f"best checkpoint: {result.best}   last (for --resume): {result.last}")
    print(f"generate with:   rnnkit generate {result.best} --prompt \"...\" --length 300")
    return 0


def add_train_commands(subparsers) -> None:
    from rnnkit.scratch.engine import OPTIMIZERS
    from rnnkit.scratch.models import CELLS
    from rnnkit.train import SCHEDULES

    train = add_parser(subparsers, "train", "train a model for a task")
    sub = train.add_subparsers(dest="task", metavar="TASK", required=True)
    p = add_parser(sub, "lm", "a character- or word-level language model (next-token prediction)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--dataset", help="a registered dataset (see `rnnkit data list`)")
    src.add_argument("--data", metavar="FILE", help="a UTF-8 text file")
    p.add_argument("--valid", metavar="FILE", help="validation text (default: the last 10%% of --data)")
    p.add_argument("--level", choices=("char", "word"), help="tokens (default: the dataset's; char for files)")
    p.add_argument("--lower", action="store_true", help="lower-case words (word level)")
    p.add_argument("--min-freq", type=int, default=1, help="rarer tokens become <unk>")
    p.add_argument("--max-vocab", type=int, help="keep only the most frequent tokens")
    p.add_argument("--cell", choices=CELLS, default="lstm")
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--embedding", type=int, help="embedding size (default: --hidden)")
    p.add_argument("--dropout", type=float, default=0.2)
    p.add_argument("--tie", action="store_true", help="tie the output layer to the embedding")
    add_engine_arguments(p)
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--bptt", type=int, default=64, help="steps of backpropagation through time per window")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--optimizer", choices=OPTIMIZERS, default="adam")
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--momentum", type=float, default=0.0, help="for sgd")
    p.add_argument("--clip", type=float, default=1.0, help="max gradient norm (0: no clipping)")
    p.add_argument("--schedule", choices=SCHEDULES, default="constant")
    p.add_argument("--warmup-steps", type=int, default=0)
    p.add_argument("--patience", type=int, help="stop after this many evaluations without improvement")
    p.add_argument("--eval-every", type=int, default=0, help="steps between evaluations (0: each epoch)")
    p.add_argument("--checkpoint-every", type=int, default=0, help="steps between saves for --resume "
                   "(0: at each evaluation)")
    p.add_argument("--max-steps", type=int, help="stop after this many updates")
    p.add_argument("--log-every", type=int, default=10, help="steps between lines of metrics.jsonl")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/lm", help="run folder (checkpoints best/ and last/, metrics.jsonl)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from last/")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train_lm)
    add_classify_command(sub)


def cmd_train_classify(args) -> int:
    from rnnkit.tasks import classify

    result = classify.train_classifier(
        dataset=args.dataset, data=args.data, valid=args.valid, test=args.test, text_column=args.text_column,
        label_column=args.label_column, min_freq=args.min_freq, max_vocab=args.max_vocab,
        max_length=args.max_length, cell=args.cell, layers=args.layers, hidden=args.hidden,
        embedding=args.embedding, bidirectional=not args.unidirectional, dropout=args.dropout,
        pooling=args.pooling, attention_size=args.attention_size, class_weights=args.class_weights,
        word_dropout=args.word_dropout, embedding_init_std=args.embedding_init_std,
        embeddings=args.embeddings, freeze_embeddings=args.freeze_embeddings, engine=args.engine,
        device=args.device, dtype=args.dtype, batch_size=args.batch_size, out=args.out, resume=args.resume,
        epochs=args.epochs, lr=args.lr, optimizer=args.optimizer, weight_decay=args.weight_decay,
        clip=args.clip or None, schedule=args.schedule, patience=args.patience, eval_every=args.eval_every,
        checkpoint_every=args.checkpoint_every, max_steps=args.max_steps, seed=args.seed,
        progress=not args.no_progress)
    state = result.state
    print(f"trained {state.step} steps; best validation loss {state.best_loss:.4f} at step {state.best_step}")
    print(f"best checkpoint: {result.best}   last (for --resume): {result.last}")
    print(f"evaluate with:   rnnkit evaluate {result.best} --data FILE   (or --dataset NAME --split test)")
    return 0


def add_classify_command(sub) -> None:
    from rnnkit.scratch.engine import OPTIMIZERS
    from rnnkit.scratch.models import CELLS
    from rnnkit.scratch.pooling import MODES
    from rnnkit.train import SCHEDULES

    p = add_parser(sub, "classify", "a text classifier (e.g. the sentiment of posts)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--dataset", help="a registered labelled dataset (e.g. airline-tweets)")
    src.add_argument("--data", metavar="FILE", help="a CSV/TSV (with a header) or JSONL file of texts and labels")
    p.add_argument("--valid", metavar="FILE", help="validation file (default: 10%% of --data)")
    p.add_argument("--test", metavar="FILE", help="test file (default: 10%% of --data)")
    p.add_argument("--text-column", default="text")
    p.add_argument("--label-column", default="label")
    p.add_argument("--min-freq", type=int, default=2, help="rarer words become <unk>")
    p.add_argument("--max-vocab", type=int)
    p.add_argument("--max-length", type=int, default=64, help="tokens kept per text")
    p.add_argument("--cell", choices=CELLS, default="lstm")
    p.add_argument("--layers", type=int, default=1)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--embedding", type=int, default=100)
    p.add_argument("--unidirectional", action="store_true", help="read left to right only")
    p.add_argument("--dropout", type=float, default=0.3)
    p.add_argument("--pooling", choices=MODES, default="max")
    p.add_argument("--attention-size", type=int, default=64)
    p.add_argument("--class-weights", choices=("none", "balanced"), default="none")
    p.add_argument("--word-dropout", type=float, default=0.0,
                   help="probability that a training token is replaced by <unk>")
    p.add_argument("--embedding-init-std", type=float, default=1.0,
                   help="the random embedding starts N(0, std^2) (1: torch's default)")
    p.add_argument("--embeddings", metavar="FILE", help="pretrained GloVe/word2vec text vectors")
    p.add_argument("--freeze-embeddings", action="store_true")
    add_engine_arguments(p)
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--optimizer", choices=OPTIMIZERS, default="adam")
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--clip", type=float, default=1.0, help="max gradient norm (0: no clipping)")
    p.add_argument("--schedule", choices=SCHEDULES, default="constant")
    p.add_argument("--patience", type=int, help="stop after this many evaluations without improvement")
    p.add_argument("--eval-every", type=int, default=0, help="steps between evaluations (0: each epoch)")
    p.add_argument("--checkpoint-every", type=int, default=0)
    p.add_argument("--max-steps", type=int)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/sentiment")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_train_classify)


def add_engine_arguments(p) -> None:
    p.add_argument("--engine", choices=("scratch", "torch"), default="scratch",
                   help="scratch: NumPy, written from scratch; torch: PyTorch (cuDNN on a GPU)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="for the torch engine")


# ----------------------------------------------------------------------------------------- generate, evaluate


def cmd_generate(args) -> int:
    from rnnkit.tasks import lm

    model = lm.load_lm(args.checkpoint, args.engine, args.device)
    print(lm.generate(model, args.prompt, args.length, args.temperature, args.top_k, args.top_p, args.seed))
    return 0


def checkpoint_task(path) -> str:
    from rnnkit.checkpoint import load_checkpoint

    return load_checkpoint(path).config.get("task", "?")


def cmd_evaluate(args) -> int:
    import json

    from rnnkit.tasks import classify, lm

    if checkpoint_task(args.checkpoint) == "classify":
        report = classify.evaluate_classifier(
            args.checkpoint, data=args.data, dataset=args.dataset, split=args.split, text_column=args.text_column,
            label_column=args.label_column, engine=args.engine, device=args.device, confusion_png=args.confusion_png)
        if args.report:
            write_json(args.report, report)
        print(json.dumps(report) if args.json else classify.format_full_report(report))
        return 0
    metrics = lm.evaluate_lm(args.checkpoint, data=args.data, dataset=args.dataset, split=args.split,
                             engine=args.engine, device=args.device, batch_size=args.batch_size, bptt=args.bptt)
    if args.json:
        print(json.dumps(metrics))
    else:
        for key, value in metrics.items():
            print(f"{key:>14}  {value:.4f}" if isinstance(value, float) else f"{key:>14}  {value}")
    return 0


def add_use_commands(subparsers) -> None:
    p = add_parser(subparsers, "generate", "generate text with a trained language model")
    p.add_argument("checkpoint", help="a checkpoint folder (e.g. runs/lm/best)")
    p.add_argument("--prompt", default="", help="text to continue (default: none, start at a line break)")
    p.add_argument("--length", type=int, default=200, help="tokens to generate")
    p.add_argument("--temperature", type=float, default=1.0, help="0: greedy")
    p.add_argument("--top-k", type=int, help="sample only among the k most likely tokens (default: all)")
    p.add_argument("--top-p", type=float, help="sample only among the most likely tokens whose probability "
                   "adds up to p (nucleus sampling; default: 1, all)")
    p.add_argument("--seed", type=int,
                   help="the same seed gives the same text, on either engine (default: a fresh random seed)")
    add_engine_arguments(p)
    p.set_defaults(func=cmd_generate)

    p = add_parser(subparsers, "evaluate", "evaluate a trained model on held-out data")
    p.add_argument("checkpoint", help="a checkpoint folder (e.g. runs/lm/best)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", metavar="FILE", help="a UTF-8 text file")
    src.add_argument("--dataset", help="a registered dataset")
    p.add_argument("--split", choices=("train", "valid", "test"), default="test", help="with --dataset")
    p.add_argument("--batch-size", type=int, default=10)
    p.add_argument("--bptt", type=int, help="window length (default: the training run's)")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    p.add_argument("--text-column", default="text", help="classifiers: the text column of --data")
    p.add_argument("--label-column", default="label", help="classifiers: the label column of --data")
    p.add_argument("--report", metavar="FILE.json", help="classifiers: write the report as JSON")
    p.add_argument("--confusion-png", metavar="FILE.png", help="classifiers: draw the confusion matrix")
    add_engine_arguments(p)
    p.set_defaults(func=cmd_evaluate)

    p = add_parser(subparsers, "predict", "label texts with a trained classifier")
    p.add_argument("checkpoint", help="a checkpoint folder (e.g. runs/sentiment/best)")
    p.add_argument("texts", nargs="*", help="texts to label (none: read --file, or standard input)")
    p.add_argument("--file", metavar="FILE", help="one text per line")
    p.add_argument("--json", action="store_true", help="one JSON object per text")
    add_engine_arguments(p)
    p.set_defaults(func=cmd_predict)


def cmd_predict(args) -> int:
    import json

    from rnnkit.tasks import classify

    if args.texts:
        texts = args.texts
    else:
        source = open(args.file, encoding="utf-8") if args.file else sys.stdin
        with source:
            texts = [line.rstrip("\n") for line in source if line.strip()]
    model = classify.load_classifier(args.checkpoint, args.engine, args.device)
    for text, result in zip(texts, model.predict(texts)):
        if args.json:
            print(json.dumps({"text": text, **result}))
        else:
            probs = "  ".join(f"{label} {p:.3f}" for label, p in result["probabilities"].items())
            print(f"{result['label']:<10} {probs}   {text}")
    return 0


# ----------------------------------------------------------------------------------------- rnnkit serve


def cmd_serve(args) -> int:
    import os

    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as e:
        print(f"error: rnnkit serve needs FastAPI and uvicorn ({e}): pip install 'rnnkit[serve]'", file=sys.stderr)
        return 2
    from rnnkit.serve.runner import run
    from rnnkit.serve.settings import ENV_API_KEY, ServeSettings

    api_key = getattr(args, "api_key", None) or os.environ.get(ENV_API_KEY) or None
    settings = ServeSettings(
        engine=args.engine, device=args.device, api_key=api_key,
        max_texts=args.max_texts, max_chars=args.max_chars, max_tokens=args.max_tokens,
        max_body_bytes=args.max_body_bytes, batching=not args.no_batching, max_batch_texts=args.max_batch_texts,
        max_batch_tokens=args.max_batch_tokens, max_wait_ms=args.max_wait_ms,
        size_priority_ms=args.size_priority_ms)
    if args.workers < 1 or args.threads < 1:
        raise ValueError("--workers and --threads must be at least 1")
    if args.host not in ("127.0.0.1", "localhost", "::1") and settings.api_key is None:
        print(f"warning: serving on {args.host} without an API key: anyone who can reach this machine can use "
              f"the model (set {ENV_API_KEY} or --api-key)", file=sys.stderr)
    run(args.checkpoint, settings, host=args.host, port=args.port, workers=args.workers, threads=args.threads,
        log_level=args.log_level, access_log=not args.no_access_log, limit_concurrency=args.limit_concurrency)
    return 0


def add_serve_command(subparsers) -> None:
    from rnnkit.serve.settings import ServeSettings

    d = ServeSettings()
    p = add_parser(subparsers, "serve", "serve a trained model over HTTP (FastAPI; docs at /docs)")
    p.add_argument("checkpoint", help="a checkpoint folder (e.g. runs/sentiment/best)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0: every interface)")
    p.add_argument("--port", type=int, default=8000)
    add_engine_arguments(p)
    p.add_argument("--workers", type=int, default=1, help="server processes, each with its own model")
    p.add_argument("--threads", type=int, default=1, help="BLAS/torch threads per process")
    p.add_argument("--api-key", default=argparse.SUPPRESS, help="require 'Authorization: Bearer KEY' on every "
                   "endpoint but /health (default: $RNNKIT_API_KEY, which keeps the key out of `ps`)")
    p.add_argument("--max-texts", type=int, default=d.max_texts, help="texts per /predict request")
    p.add_argument("--max-chars", type=int, default=d.max_chars, help="characters per text or prompt")
    p.add_argument("--max-tokens", type=int, default=d.max_tokens, help="tokens per /generate request")
    p.add_argument("--max-body-bytes", type=int, default=d.max_body_bytes, help="request body size (413 above)")
    p.add_argument("--no-batching", action="store_true", help="run /predict requests one at a time")
    p.add_argument("--max-batch-texts", type=int, default=d.max_batch_texts,
                   help="texts per model call when batching concurrent requests")
    p.add_argument("--max-batch-tokens", type=int, default=d.max_batch_tokens,
                   help="padded tokens per model call (texts x the longest text's tokens)")
    p.add_argument("--max-wait-ms", type=float, default=d.max_wait_ms,
                   help="longest a request waits for others to join its batch")
    p.add_argument("--size-priority-ms", type=float, default=d.size_priority_ms,
                   help="queue a request of n texts as if it came (n-1) x this many ms later, so that small "
                        "requests are not stuck behind large ones (0: arrival order)")
    p.add_argument("--limit-concurrency", type=int, help="answer 503 beyond this many open requests/connections")
    p.add_argument("--log-level", choices=("critical", "error", "warning", "info", "debug"), default="info")
    p.add_argument("--no-access-log", action="store_true", help="do not log each request")
    p.set_defaults(func=cmd_serve)


COMMANDS = [add_data_commands, add_train_commands, add_use_commands, add_serve_command]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rnnkit", description="Recurrent neural networks: data, training, "
                                     "evaluation and serving.", formatter_class=FORMATTER)
    parser.add_argument("--version", action="version", version=f"rnnkit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in COMMANDS:
        add(sub)
    show_defaults(parser)
    return parser


def show_defaults(parser: argparse.ArgumentParser) -> None:
    """Give every option without a help text one that shows its default, in this parser and every
    subcommand's (argparse shows nothing at all, default included, for an option without help)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):  # aliases share a parser
                show_defaults(child)
        elif action.option_strings and action.help is None and action.default is not argparse.SUPPRESS:
            off = action.default is None or action.default is False
            action.help = "(default: none)" if off else "(default: %(default)s)"


def main(argv=None) -> int:
    """Run the command line `argv` (default: sys.argv[1:]); return the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version, or a usage error (already printed by argparse)
        return 0 if e.code is None else e.code if isinstance(e.code, int) else 2
    try:
        return args.func(args)
    except USER_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
