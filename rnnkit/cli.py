"""The `rnnkit` command.

Each command group is a function `add_<group>_commands(subparsers)` that adds its parsers and sets
`func=<handler>` on them; a handler takes the parsed arguments and returns an exit code. To add a command,
write such a function and append it to COMMANDS. Errors the user can fix (ValueError, OSError, DatasetError)
print `error: ...` to stderr and exit with code 2, without a traceback.

`rnnkit train TASK` has one option per setting of the task (rnnkit/tasks/settings.py's dataclass fields:
add_settings_options), so a setting is added there, in one line, and nowhere here. Its options default to
nothing: what is given goes over the --config file, the preset and the fields' defaults (resolve_settings).
"""

from __future__ import annotations

if __name__ == "__main__":  # `python -m rnnkit.cli`: tune the process before the imports below load NumPy
    from rnnkit.runtime import tune_process

    tune_process()

import argparse
import contextlib
import json
import math
import os
import sys

from rnnkit import __version__
from rnnkit.checkpoint.atomic import check_output, write_json
from rnnkit.data import datasets
from rnnkit.tasks.forecast_baselines import BASELINES, NUMPY_BASELINES
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
BASELINE_NAMES = tuple(BASELINES)  # rnnkit.tasks.forecast_baselines' names


def add_parser(subparsers, name: str, help: str, description: str | None = None,
               **kwargs) -> argparse.ArgumentParser:
    """A subcommand parser that shows defaults in --help (its description: `help`, unless given)."""
    return subparsers.add_parser(name, help=help, description=description or help, formatter_class=FORMATTER,
                                 **kwargs)


# ----------------------------------------------------------------------------------------- rnnkit data


def cmd_data_list(args) -> int:
    rows = [(d.name, d.size, d.license, d.description) for d in datasets.list_datasets()]
    if args.json:
        print(json.dumps([dict(zip(("name", "size", "license", "description"), row)) for row in rows]))
        return 0
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
    p.add_argument("--json", action="store_true", help="print them as a JSON list of objects")
    p.set_defaults(func=cmd_data_list)
    p = add_parser(sub, "fetch", "download, verify and cache datasets; print their cache folders")
    p.add_argument("names", nargs="+", metavar="NAME", help="dataset name (see `rnnkit data list`)")
    p.add_argument("--home", default=str(datasets.home()), help="cache folder ($RNNKIT_HOME, else ~/.cache/rnnkit)")
    p.set_defaults(func=cmd_data_fetch)
    from rnnkit.tasks.settings import LMData  # the defaults of --min-freq, --max-vocab
    p = add_parser(sub, "prepare", "tokenise a text file once, streaming, into memory-mapped token ids for "
                   "`rnnkit train lm --prepared DIR` (corpora larger than memory)")
    p.add_argument("text_file", metavar="TEXT_FILE", help="a UTF-8 text file (the training text)")
    p.add_argument("--out", required=True, metavar="DIR", help="the folder to write (ids, vocab.json, manifest.json)")
    p.add_argument("--valid", metavar="FILE", help="a validation text, encoded with the training vocabulary "
                   "(default: training holds out the last 10%% of the tokens)")
    p.add_argument("--level", choices=("char", "word"), default="char", help="tokens (default: char)")
    p.add_argument("--lower", action="store_true", help="lower-case words (word level)")
    p.add_argument("--min-freq", type=int, default=LMData.min_freq, help="rarer tokens become <unk> (default: 1)")
    p.add_argument("--max-vocab", type=int, default=LMData.max_vocab, help="keep only the most frequent tokens "
                   "(default: all)")
    p.set_defaults(func=cmd_data_prepare)


def cmd_data_prepare(args) -> int:
    from rnnkit.tasks.lm import prepare_corpus
    m = prepare_corpus(args.text_file, args.out, args.level, args.lower, args.min_freq, args.max_vocab, args.valid)
    for part, f in m["files"].items():
        print(f"{part}: {f['count']:,} {m['tokenizer']['level']} tokens ({f['dtype']}) from {f['source']['path']} "
              f"({f['source']['bytes']:,} bytes)")
    print(f"vocabulary {m['vocab_size']:,}; train with:  rnnkit train lm --prepared {args.out}")
    return 0


# ----------------------------------------------------------------------------------------- rnnkit train

TRAIN_TASKS = {  # task → (what it trains, the next step: {best} is the best checkpoint)
    "lm": ("a character- or word-level language model (next-token prediction)",
           'generate with:   rnnkit generate {best} --prompt "..." --length 300'),
    "classify": ("a text classifier (e.g. the sentiment of posts)",
                 "evaluate with:   rnnkit evaluate {best} --data FILE   (or --dataset NAME --split test)"),
    "seq2seq": ("a translation model (sequence to sequence, with attention)",
                'translate with:  rnnkit translate {best} "text" --beam 5\n'
                "evaluate with:   rnnkit evaluate {best}   (BLEU, chrF, exact match on the held-out test split)"),
    "forecast": ("a time-series forecaster (an RNN encoder, a direct or autoregressive decoder, intervals)",
                 "forecast with:   rnnkit forecast {run} --horizon N   (evaluate: rnnkit evaluate {run})"),
    "memory": ("a network on a long-memory problem (adding, copy, temporal order) of any length",
               "loss_vs_baseline < 1 in the validation lines: it beats the memoryless baseline (best: {best})"),
}
LAYERS = ("The settings come in layers, each over the one before: the defaults shown below < the preset "
          "(--preset; without it, the dataset's own preset if it has one: --dataset airline-tweets) < the "
          "--config file < the options given here.")


def resolve_settings(args):
    """The run's settings: the defaults < the preset < the --config file < the options given."""
    from rnnkit.settings import read_config
    from rnnkit.tasks.settings import TASKS, resolve

    given = {name: getattr(args, name) for name in TASKS[args.task].options() if hasattr(args, name)}
    config = read_config(args.config) if args.config else None
    return resolve(args.task, given, preset=getattr(args, "preset", None), config=config, where=args.config,
                   dataset_preset=True)


def cmd_train(args) -> int:
    """`rnnkit train TASK`; under torchrun, the ranks > 0 train in silence (rank 0 prints, and writes the run)."""
    from rnnkit.engines import launch

    if launch().rank == 0:
        return train_task(args)
    with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet):
        return train_task(args)


def train_task(args) -> int:
    import json

    from rnnkit.tasks import classify, forecast, lm, memory, seq2seq

    settings = resolve_settings(args)
    if args.dry_run:
        print(json.dumps(settings.to_dict(), indent=2))
        return 0
    if args.task == "forecast":
        results = forecast.train_forecaster(settings)
        for r in results:
            print(f"trained {r.state.step} steps on the {r.ran_on}; best validation loss {r.state.best_loss:.4f} "
                  f"at step {r.state.best_step}: {r.best}")
        print(TRAIN_TASKS[args.task][1].format(run=settings.training.out))
        return 0
    run = {"lm": lm.train_lm, "classify": classify.train_classifier, "seq2seq": seq2seq.train_seq2seq,
           "memory": memory.train_memory}[args.task]
    with contextlib.redirect_stdout(sys.stderr) if args.json else contextlib.nullcontext():
        result = run(settings)   # with --json, what it prints goes to stderr: stdout is the summary alone
    state = result.state
    saved = (result.best / "config.json").is_file()   # not after --max-steps 0
    if args.json:
        print(json.dumps({"steps": state.step, "ran_on": result.ran_on, "best_loss": state.best_loss if saved
                          else None, "best_step": state.best_step if saved else None, "best": str(result.best)
                          if saved else None, "last": str(result.last) if saved else None,
                          "validation": result.last_metrics, "test": getattr(result, "test", None)}))
        return 0
    if not saved:
        print(f"trained {state.step} steps on the {result.ran_on}; no checkpoint was saved (nothing was trained "
              f"or evaluated)")
        return 0
    print(f"trained {state.step} steps on the {result.ran_on}; best validation loss {state.best_loss:.4f} at "
          f"step {state.best_step}")
    print(f"best checkpoint: {result.best}   last (for --resume): {result.last}")
    print(TRAIN_TASKS[args.task][1].format(best=result.best))
    return 0


def add_train_commands(subparsers) -> None:
    from rnnkit.tasks import presets
    from rnnkit.tasks.settings import TASKS

    train = add_parser(subparsers, "train", "train a model for a task")
    sub = train.add_subparsers(dest="task", metavar="TASK", required=True)
    for task, (about, _) in TRAIN_TASKS.items():
        p = add_parser(sub, task, about, description=f"Train {about}. {LAYERS}")
        named = presets.for_task(task)
        if named:  # rnnkit/tasks/presets.py
            listed = "; ".join(f"{name}: {preset.about}" for name, preset in named.items())
            p.add_argument("--preset", choices=[*named, presets.NONE],
                           help=f"named settings ({listed}; none: no preset, not even the dataset's) (default: "
                                f"the dataset's own preset, if it has one)")
        p.add_argument("--config", metavar="FILE", help="settings from a JSON file, or YAML with PyYAML installed: "
                       "{\"hidden\": 64, ...}, or in sections {\"model\": {\"hidden\": 64}, ...}, as --dry-run "
                       "prints them; may name a \"preset\"")
        p.add_argument("--dry-run", action="store_true", help="print the settings as JSON and stop")
        p.add_argument("--json", action="store_true", help="print the final summary as one JSON object (the rest "
                       "goes to stderr)")
        add_settings_options(p, TASKS[task])
        p.set_defaults(func=cmd_train)


def cmd_resume(args) -> int:
    from rnnkit import runs

    for task in TRAIN_TASKS:
        if runs.saved_settings(args.run, task) is not None:
            return main(["train", task, *args.options, "--out", args.run, "--resume"])
    raise ValueError(f"{args.run} holds no run.json: resume it with `rnnkit train TASK --out {args.run} --resume` "
                     f"and the options it was started with")


def cmd_plot(args) -> int:
    from rnnkit.plots import plot_run

    for path in plot_run(args.run, args.png, svg=args.svg, x=args.x):
        print(path)
    return 0


def add_run_commands(subparsers) -> None:
    p = add_parser(subparsers, "resume", "continue a training run from its last/ checkpoint, with its settings")
    p.add_argument("run", metavar="RUN", help="the run's folder (its --out), e.g. runs/lm")
    p.add_argument("options", nargs=argparse.REMAINDER, help="options of `rnnkit train TASK` that may change: "
                   "--epochs, --max-steps, --patience, --lr, --no-progress, ...")
    p.set_defaults(func=cmd_resume)
    p = add_parser(subparsers, "plot", "draw a training run's curves: loss, validation metrics, learning rate, "
                   "gradient norm")
    p.add_argument("run", metavar="RUN", help="the run's folder (its --out), e.g. runs/lm")
    p.add_argument("--png", metavar="FILE.png", help="where to write the figure (default: RUN/curves.png)")
    p.add_argument("--svg", action="store_true", help="also write it as SVG, beside the PNG")
    p.add_argument("--x", choices=("step", "time"), default="step", help="against the step or the wall time")
    p.set_defaults(func=cmd_plot)


def add_settings_options(parser, settings) -> None:
    """One option per setting of `settings` (rnnkit/tasks/settings.py), a group of them per section; the
    settings of an `exclusive` group are mutually exclusive. Every default is SUPPRESS: the parsed arguments
    hold only the options given, the top layer over the preset and the --config file."""
    for section, section_cls in settings.sections().items():
        group = parser.add_argument_group(f"{section} settings")
        exclusive = {}
        for option in settings.options().values():
            if option.section == section:
                name = option.meta.get("exclusive")
                if name and name not in exclusive:
                    exclusive[name] = group.add_mutually_exclusive_group()
                add_setting_option(exclusive[name] if name else group, option)


def add_setting_option(parser, option, suppress: bool = True) -> None:
    """The option of one setting (rnnkit/settings.py's Option): --kebab-case, or the field's `flags`; a bool is
    a switch (--x when it is False by default, --no-x when True); `X | None` takes an X, or "none" for a
    number; the field's choices, metavar, help, and the default shown in the help."""
    kebab = option.name.replace("_", "-")
    flags = option.meta.get("flags") or (f"--no-{kebab}" if option.kind is bool and option.default else f"--{kebab}",)
    help = option.meta["help"]
    if option.kind is not bool and option.default is not None and "default:" not in help:
        help += f" (default: {option.default})"
    kwargs = dict(dest=option.name, help=help.replace("%", "%%"),
                  default=argparse.SUPPRESS if suppress else option.default)
    if option.kind is bool:
        kwargs["action"] = "store_false" if option.default else "store_true"
    else:
        kind = option.kind
        if option.optional and kind is not str:
            kind = none_or(kind)
        kwargs.update(type=kind, choices=option.meta.get("choices"), metavar=option.meta.get("metavar"))
    parser.add_argument(*flags, **kwargs)


def none_or(kind):
    """An argparse type: "none" (or "null") for None, else `kind` (an int, a float)."""

    def parse(text: str):
        return None if text.lower() in ("none", "null") else kind(text)

    parse.__name__ = kind.__name__  # argparse's message: invalid int value: 'x'
    return parse


def checked(kind, test, what: str):
    """An argparse type: `kind(text)` where `test` holds for it, else an argument error (exit 2) saying that
    the option must be `what` ("--top-k: must be an integer >= 1, got '0'")."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not test(value):
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
        return value

    parse.__name__ = kind.__name__
    return parse


def add_engine_arguments(p) -> None:
    """--engine and --device, as the training settings have them (help, choices, default)."""
    from rnnkit.settings import options_of
    from rnnkit.train import TrainConfig

    options = options_of(TrainConfig)
    for name in ("engine", "device"):
        add_setting_option(p, options[name], suppress=False)


# ----------------------------------------------------------------------------------------- rnnkit info


def cmd_info(args) -> int:
    import json

    from rnnkit.engines import info

    found = info()
    if args.json:
        print(json.dumps(found, indent=2, default=str))
    else:
        for key, value in found.items():
            print(f"{key}: {value}")
    return 0


def add_info_command(subparsers) -> None:
    p = add_parser(subparsers, "info", "print the environment (versions, BLAS, threads, torch, CUDA) for bug "
                   "reports, as key: value lines")
    p.add_argument("--json", action="store_true", help="print it as a JSON object")
    p.set_defaults(func=cmd_info)


# ----------------------------------------------------------------------------------------- generate, evaluate


def cmd_generate(args) -> int:
    from rnnkit.tasks import lm

    import secrets

    model = lm.load_lm(args.checkpoint, args.engine, args.device)
    unknown = lm.unknown_prompt(model, args.prompt)
    if unknown:
        print(f"note: {len(unknown)} token(s) of the prompt are unknown to the model's vocabulary (e.g. "
              f"{unknown[0]!r}) and are read as its unknown token", file=sys.stderr)
    seed = secrets.randbits(32) if args.seed is None else args.seed   # --json shows it: --seed repeats the text
    text = lm.generate(model, args.prompt, args.length, args.temperature, args.top_k, args.top_p, seed)
    if args.json:
        print(json.dumps({"text": text, "prompt": args.prompt, "length": args.length, "temperature":
                          args.temperature, "top_k": args.top_k, "top_p": args.top_p, "seed": seed}))
    else:
        print(text)
    return 0


def checkpoint_task(path) -> str:
    from rnnkit.tasks.forecast import checkpoint_paths
    from rnnkit.tasks.pretrained import open_checkpoint

    try:
        return open_checkpoint(checkpoint_paths(path)[0]).config.get("task", "?")  # a run or ensemble folder too
    except FileNotFoundError:
        return open_checkpoint(path).config.get("task", "?")


def cmd_evaluate(args) -> int:
    import json

    from rnnkit.tasks import classify, lm

    task = checkpoint_task(args.checkpoint)
    if task == "seq2seq":
        return evaluate_seq2seq(args)
    if task == "forecast":
        return cmd_evaluate_forecaster(args)
    if args.data is None and args.dataset is None:
        raise ValueError("give the data to evaluate on: --data FILE or --dataset NAME")
    if task == "classify":
        report = classify.evaluate_classifier(
            args.checkpoint, data=args.data, dataset=args.dataset, split=args.split, text_column=args.text_column,
            label_column=args.label_column, label_map=args.label_map, engine=args.engine, device=args.device,
            confusion_png=args.confusion_png, all_labels=args.all_labels, progress=not args.quiet)
        if args.report:
            write_json(args.report, report)
        if not args.quiet:
            for note in report.get("notes", ()):
                print(f"note: {note}", file=sys.stderr)
        print(json.dumps(report) if args.json else classify.format_full_report(report))
        return 0
    if args.split == "all" or (args.data is not None and args.split is not None):
        raise ValueError("a language model scores a --data file whole: --split is for --dataset")
    metrics = lm.evaluate_lm(args.checkpoint, data=args.data, dataset=args.dataset, split=args.split or "test",
                             engine=args.engine, device=args.device, batch_size=args.batch_size, bptt=args.bptt,
                             progress=not args.quiet)
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
    p.add_argument("--length", type=checked(int, lambda n: n >= 0, "an integer >= 0"), default=200,
                   help="tokens to generate")
    p.add_argument("--temperature", default=1.0, help="0: greedy",
                   type=checked(float, lambda t: math.isfinite(t) and t >= 0, "a finite number >= 0"))
    p.add_argument("--top-k", type=checked(int, lambda k: k >= 1, "an integer >= 1"),
                   help="sample only among the k most likely tokens (default: all)")
    p.add_argument("--top-p", type=checked(float, lambda q: 0 < q <= 1, "a number in (0, 1]"),
                   help="sample only among the most likely tokens whose probability adds up to p (nucleus "
                   "sampling; default: 1, all)")
    p.add_argument("--seed", type=int,
                   help="the same seed gives the same text, on either engine (default: a fresh random seed)")
    p.add_argument("--json", action="store_true", help="print the text and the settings as a JSON object")
    add_engine_arguments(p)
    p.set_defaults(func=cmd_generate)

    p = add_parser(subparsers, "evaluate", "evaluate a trained model on held-out data")
    p.add_argument("checkpoint", help="a checkpoint folder (e.g. runs/lm/best; a forecaster's run folder)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--data", metavar="FILE", help="a UTF-8 text file (a language model), a labelled CSV/TSV/"
                     "JSONL file (a classifier), a file of pairs (translation; default: the held-out split of the "
                     "model's own data), a series file (forecasters; default: the series it was trained on)")
    src.add_argument("--dataset", help="a registered dataset")
    p.add_argument("--split", choices=("train", "valid", "test", "all"),
                   help="with --dataset (translation: of the model's own data): its split (default: test). With a "
                   "classifier's --data: all: every row; train/valid/test: that part of the file the model was "
                   "trained on (default: test for that file, all for another)")
    p.add_argument("--batch-size", type=int, default=10, help="language models: parallel streams")
    p.add_argument("--bptt", type=int, help="window length (default: the training run's)")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar, no notes")
    p.add_argument("--text-column", help="classifiers: the text column of --data (default: the checkpoint's)")
    p.add_argument("--label-column", help="classifiers: the label column of --data (default: the checkpoint's)")
    p.add_argument("--label-map", metavar="OLD=NEW,...", help="classifiers: rename the data's labels, e.g. "
                   "pos=positive,neg=negative (default: the checkpoint's)")
    p.add_argument("--all-labels", action="store_true", help="classifiers: score over all the model's labels, "
                   "even those the data lacks (default: over the labels present, probabilities renormalised)")
    p.add_argument("--report", metavar="FILE.json", help="classifiers: write the report as JSON")
    p.add_argument("--confusion-png", metavar="FILE.png", help="classifiers: draw the confusion matrix")
    p.add_argument("--source-column", help="translation: the source column of --data (default: the training run's)")
    p.add_argument("--target-column", help="translation: the target column of --data (default: the training run's)")
    add_decoding_options(p, "translation: ")
    p.add_argument("--test", type=int, help="forecasters: the steps held out at the end (default: the run's)")
    p.add_argument("--plot", metavar="FILE.png", help="forecasters: draw the forecast beside the held-out truth")
    p.add_argument("--baselines", default=",".join(NUMPY_BASELINES), help="forecasters: the baselines beside the "
                   "model, of " + ", ".join(BASELINE_NAMES) + " (ets and auto-arima: pip install 'rnnkit[forecast]')")
    add_engine_arguments(p)
    p.set_defaults(func=cmd_evaluate)

    p = add_parser(subparsers, "translate", "translate texts with a trained translation (seq2seq) model")
    p.add_argument("checkpoint", help="a checkpoint folder (e.g. runs/seq2seq/best)")
    p.add_argument("texts", nargs="*", help="texts to translate (none: read --file, or standard input)")
    p.add_argument("--file", metavar="FILE", help="one text per line")
    p.add_argument("--json", action="store_true", help="one JSON object per text")
    p.add_argument("--attention-png", metavar="FILE.png", help="draw the attention of the (first) text's best "
                   "translation: source tokens x output tokens")
    add_decoding_options(p)
    add_engine_arguments(p)
    p.set_defaults(func=cmd_translate)

    p = add_parser(subparsers, "predict", "label texts with a trained classifier")
    p.add_argument("checkpoint", help="a checkpoint folder (e.g. runs/sentiment/best)")
    p.add_argument("texts", nargs="*", help="texts to label (none: read --file, or standard input)")
    p.add_argument("--file", metavar="FILE", help="one text per line")
    p.add_argument("--json", action="store_true", help="one JSON object per text")
    add_engine_arguments(p)
    p.set_defaults(func=cmd_predict)


def add_decoding_options(parser, prefix: str = "") -> None:
    """--beam, --n-best, --length-penalty, --max-ratio, --max-offset: rnnkit/tasks/settings.py's Decoding."""
    from rnnkit.settings import options_of
    from rnnkit.tasks.settings import Decoding

    for option in options_of(Decoding).values():
        add_setting_option(parser, option, suppress=False)
        if prefix:
            parser._actions[-1].help = prefix + parser._actions[-1].help


def decoding_of(args):
    from rnnkit.settings import options_of
    from rnnkit.tasks.settings import Decoding

    return Decoding(**{name: getattr(args, name) for name in options_of(Decoding)})


def evaluate_seq2seq(args) -> int:
    import json

    from rnnkit.tasks import seq2seq

    if args.dataset is not None:
        raise ValueError("a translation model is evaluated on its own data (--split) or on a file (--data)")
    if args.split == "all" or (args.data is not None and args.split is not None):
        raise ValueError("a translation model scores a --data file whole: --split picks a part of its own data")
    report = seq2seq.evaluate_seq2seq(args.checkpoint, split=args.split or "test", data=args.data,
                                      source_column=args.source_column, target_column=args.target_column,
                                      decoding=decoding_of(args), engine=args.engine, device=args.device)
    if args.report:
        write_json(args.report, report)
    print(json.dumps(report, ensure_ascii=False) if args.json else seq2seq.format_report(report))
    return 0


def read_texts(args) -> list[str]:
    """The positional texts, else the lines of --file, else of standard input (blank lines skipped)."""
    if args.texts:
        return args.texts
    if args.file:
        from rnnkit.data.text import read_text

        lines = read_text(args.file).splitlines()
    else:
        lines = sys.stdin.read().splitlines()
    texts = [line for line in lines if line.strip()]
    if not texts:
        raise ValueError(f"no texts to read in {args.file or 'standard input'}")
    return texts


def cmd_translate(args) -> int:
    import json

    from rnnkit.tasks import seq2seq

    decoding = decoding_of(args)
    texts = read_texts(args)
    model = seq2seq.load_seq2seq(args.checkpoint, args.engine, args.device)
    results = model.translate(texts, decoding)
    if args.attention_png:
        from rnnkit.plots import plot_attention

        first, best = results[0], results[0]["translations"][0]
        outputs = best["tokens"] + (["<eos>"] if best["finished"] else [])  # a row per emitted token
        plot_attention(first["attention"], first["source_tokens"], outputs, args.attention_png,
                       title=f"Attention: {first['source'][:60]}")
    for result in results:
        if args.json:
            result = {"source": result["source"], "translations": [
                {k: t[k] for k in ("text", "score", "log_prob", "finished")} for t in result["translations"]]}
            print(json.dumps(result, ensure_ascii=False))
        elif decoding.n_best == 1:
            print(result["translations"][0]["text"])
        else:
            print(result["source"])
            for rank, t in enumerate(result["translations"], 1):
                print(f"  {rank}. {t['text']}   (score {t['score']:.3f})")
    return 0


def cmd_predict(args) -> int:
    import json

    from rnnkit.tasks import classify

    from pathlib import Path

    from rnnkit.data.text import decode_utf8

    if args.texts:
        texts = args.texts
    else:
        lines = (decode_utf8(Path(args.file).read_bytes(), args.file) if args.file else sys.stdin.read()).split("\n")
        texts = [line.rstrip("\r") for line in lines if line.strip()]
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
        import httptools  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as e:
        print(f"error: rnnkit serve needs FastAPI, uvicorn and httptools ({e}): pip install 'rnnkit[serve]'",
              file=sys.stderr)
        return 2
    from rnnkit.serve.runner import run
    from rnnkit.serve.settings import ENV_API_KEY, ServeSettings

    api_key = getattr(args, "api_key", None) or os.environ.get(ENV_API_KEY) or None
    settings = ServeSettings(engine=args.engine, device=args.device, api_key=api_key,
                             **{name: getattr(args, name) for name in serve_options()})
    if args.workers < 1 or args.threads < 1:
        raise ValueError("--workers and --threads must be at least 1")
    if args.host not in ("127.0.0.1", "localhost", "::1") and settings.api_key is None:
        print(f"warning: serving on {args.host} without an API key: anyone who can reach this machine can use "
              f"the model (set {ENV_API_KEY} or --api-key)", file=sys.stderr)
    run(args.checkpoint, settings, host=args.host, port=args.port, workers=args.workers, threads=args.threads,
        log_level=args.log_level, access_log=not args.no_access_log)
    return 0


def serve_options() -> dict:
    """The settings of rnnkit/serve/settings.py that `rnnkit serve` has an option for, each from its field
    (engine, device and the API key are taken as other commands take them)."""
    from rnnkit.serve.settings import ServeSettings
    from rnnkit.settings import options_of

    return {name: o for name, o in options_of(ServeSettings).items() if name not in ("engine", "device", "api_key")}


def add_serve_command(subparsers) -> None:
    p = add_parser(subparsers, "serve", "serve a trained model over HTTP (FastAPI; docs at /docs)")
    p.add_argument("checkpoint", help="a checkpoint folder (e.g. runs/sentiment/best)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0: every interface)")
    p.add_argument("--port", type=int, default=8000)
    add_engine_arguments(p)
    p.add_argument("--workers", type=int, default=1, help="server processes, each with its own model")
    p.add_argument("--threads", type=int, default=1, help="BLAS/torch threads per process")
    p.add_argument("--api-key", default=argparse.SUPPRESS, help="require 'Authorization: Bearer KEY' on every "
                   "endpoint but /health (default: $RNNKIT_API_KEY, which keeps the key out of `ps`)")
    groups = {}
    for option in serve_options().values():
        group = option.meta.get("group", "server")
        if group not in groups:
            groups[group] = p.add_argument_group(f"{group} settings")
        add_setting_option(groups[group], option, suppress=False)
    p.add_argument("--log-level", choices=("critical", "error", "warning", "info", "debug"), default="info")
    p.add_argument("--no-access-log", action="store_true", help="do not log each request")
    p.set_defaults(func=cmd_serve)


# ----------------------------------------------------------------------------------- forecasting


def _history(model, path):
    """A series file read as the forecaster's training data was (date column, targets, covariates, fill)."""
    from rnnkit.data.series import read_series

    d = model.settings.data
    return read_series(path, d.date_column, model.history.target, model.history.covariates, d.fill,
                       model.features.freq)


def cmd_forecast(args) -> int:
    import json

    from rnnkit.tasks.forecast import Forecaster, format_forecast, plot_forecast, to_json

    model = Forecaster.from_pretrained(args.checkpoint, args.engine, args.device)
    history = _history(model, args.data) if args.data else None
    if args.quantiles:
        if args.plot or args.levels:
            raise ValueError("--quantiles prints quantiles only: leave out --levels and --plot")
        result = model.predict_quantiles(args.horizon, args.quantiles, history)
        print(json.dumps(to_json(result, model.features.freq)) if args.json
              else format_forecast(result, model.features.freq))
        return 0
    if args.levels == "none" or model.config["model"]["loss"] in ("mse", "mae"):
        result = model.predict(args.horizon, history)
    else:
        result = model.predict_interval(args.horizon, args.levels, history, calibrated=not args.uncalibrated)
    if args.plot:
        plot_forecast(result, model.history if history is None else history, args.plot)
    print(json.dumps(to_json(result, model.features.freq)) if args.json else format_forecast(result, model.features.freq))
    return 0


def _baseline_names(text: str) -> tuple[str, ...]:
    """--baselines naive,ets -> the names, each one known ("none": no baselines)."""
    names = tuple(n.strip() for n in text.split(",") if n.strip() and n.strip() != "none")
    unknown = [n for n in names if n not in BASELINE_NAMES]
    if unknown:
        raise ValueError(f"unknown baseline {unknown[0]!r}; choose from {', '.join(BASELINE_NAMES)}, or none")
    return names


def cmd_backtest(args) -> int:
    import json

    from rnnkit.tasks.forecast import Forecaster, plot_backtest

    model = Forecaster.from_pretrained(args.checkpoint, args.engine, args.device)
    series = _history(model, args.data) if args.data else model.series()
    start = int(args.start) if args.start.lstrip("-").isdigit() else args.start  # a row, else a date
    report = model.backtest(start, args.horizon, args.stride, series, retrain=args.retrain or False,
                            last_points_only=args.last_points_only, levels=() if args.levels == "none" else args.levels,
                            baselines=_baseline_names(args.baselines), log=lambda line: None if args.json else print(line))
    if args.plot:
        report["plot"] = str(plot_backtest(series, report, args.plot))
    if args.json:
        print(json.dumps(report))
    else:
        print(f"{len(report['starts'])} forecasts of {report['horizon']} steps from {report['starts'][0]}, "
              f"every {report['stride']}" + (f", retrained every {args.retrain} forecasts" if args.retrain else "")
              + ("; the series of their last points scored" if args.last_points_only else ""))
        scores = ["mae", "rmse", "mape", "smape", "mase"] + [f"coverage_{lv:g}" for lv in report["levels"]]
        print_scores({"model": {k: report[k] for k in scores + (["pinball"] if report["levels"] else [])},
                      **report["baselines"]})
    return 0


def print_scores(rows: dict) -> None:
    """{row name: {metric: value}} as a table, a column a metric of the first row ("-": undefined or none)."""
    keys = list(next(iter(rows.values())))
    widths = [max(12, len(k) + 2) for k in keys]
    print(f"{'':<16}" + "".join(f"{k:>{w}}" for k, w in zip(keys, widths)))
    for name, scores in rows.items():
        print(f"{name:<16}" + "".join(f"{scores[k]:>{w}.4f}" if scores.get(k) is not None else f"{'-':>{w}}"
                                      for k, w in zip(keys, widths)))


def cmd_calibrate(args) -> int:
    import json
    from pathlib import Path

    from rnnkit.tasks.conformal import FILE
    from rnnkit.tasks.forecast import Forecaster

    model = Forecaster.from_pretrained(args.checkpoint, args.engine, args.device)
    if (Path(args.checkpoint) / FILE).exists() and not args.overwrite:
        raise FileExistsError(f"{Path(args.checkpoint) / FILE} exists; give --overwrite to replace it")
    series = _history(model, args.data) if args.data else None
    cal = model.calibrate(args.forecasts, args.stride, series, args.retrain, args.levels,
                          log=lambda line: None if args.json else print(line))
    path = cal.save(args.checkpoint, overwrite=args.overwrite)
    summary = cal.summary() | {"path": str(path)}
    if args.json:
        print(json.dumps(summary))
        return 0
    print(f"calibrated on {len(cal.origins)} forecasts of {cal.horizon} steps from {cal.origins[0]} to "
          f"{cal.origins[-1]}; wrote {path}")
    for lv, e in cal.margins.items():
        scale = "log" if cal.offset is not None else "y"
        print(f"{lv:g} %: coverage before {cal.coverage[lv]:.3f}; margin ({scale}) {e.min():.4g} .. {e.max():.4g}"
              + ("" if cal.guaranteed[lv] else f" (too few forecasts for a guarantee at {lv:g} %)"))
    return 0


def cmd_evaluate_forecaster(args) -> int:
    import json

    from rnnkit.tasks.forecast import Forecaster

    model = Forecaster.from_pretrained(args.checkpoint, args.engine, args.device)
    if args.dataset is not None:
        raise ValueError("a forecaster is evaluated on its own series, or on --data FILE")
    report = model.evaluate(_history(model, args.data) if args.data else None, args.test,
                            baselines=_baseline_names(args.baselines), plot=args.plot)
    if args.report:
        write_json(args.report, report)
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"the last {report['held_out']} steps (from {report['first']}) held out; MASE scaled with m = {report['m']}")
    print_scores({"model": report["model"], **report["baselines"]})
    if "calibrated" in report:
        c = report["calibrated"]
        print(f"intervals calibrated on {c['forecasts']} forecasts from {c['first']} to {c['last']} "
              f"(calibration.json; the model's own: coverage_*_uncalibrated)")
    return 0


def add_forecast_commands(subparsers) -> None:
    p = add_parser(subparsers, "forecast", "forecast with a trained forecaster, with prediction intervals")
    p.add_argument("checkpoint", help="a forecaster's run folder (e.g. runs/forecast), ensemble or checkpoint")
    p.add_argument("--data", metavar="FILE", help="the history to continue, a series file like the training "
                   "data (default: the end of the series it was trained on)")
    p.add_argument("--horizon", type=int, help="steps to forecast (default: the model's)")
    p.add_argument("--levels", help="interval levels in percent, e.g. 80,95 (default: the model's; none: "
                   "point forecasts only)")
    p.add_argument("--json", action="store_true", help="print the forecast as JSON")
    p.add_argument("--plot", metavar="FILE.png", help="draw the history, the forecast and its intervals")
    p.add_argument("--uncalibrated", action="store_true", help="the model's own intervals, not the conformal "
                   "ones of its calibration.json (rnnkit calibrate)")
    p.add_argument("--quantiles", help="print these quantiles of each step instead, e.g. 0.1,0.5,0.9 (the "
                   "model's own; a quantile model knows those it was trained for)")
    add_engine_arguments(p)
    p.set_defaults(func=cmd_forecast)

    p = add_parser(subparsers, "calibrate", "calibrate a forecaster's intervals on forecasts it did not train on",
                   "Conformal calibration (rnnkit/tasks/conformal.py): models with the checkpoint's settings are "
                   "trained anew on the history before each calibration forecast; their intervals' misses "
                   "widen (or narrow) every later forecast's intervals, step by step of the horizon. Writes "
                   "calibration.json into the checkpoint's folder, used by forecast, evaluate and serve.")
    p.add_argument("checkpoint", help="a forecaster's run folder (e.g. runs/forecast), ensemble or checkpoint")
    p.add_argument("--forecasts", type=int, default=12, help="calibration forecasts of the whole horizon, the "
                   "last ending where the held-out part begins (19 or more for a guarantee at 95 %%)")
    p.add_argument("--stride", type=int, default=1, help="steps between calibration forecasts")
    p.add_argument("--retrain", type=int, default=1, metavar="K", help="train anew before every K-th forecast "
                   "(the others feed the last model the longer history)")
    p.add_argument("--levels", help="interval levels in percent (default: the model's)")
    p.add_argument("--data", metavar="FILE", help="a series file (default: the series it was trained on)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing calibration.json")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    add_engine_arguments(p)
    p.set_defaults(func=cmd_calibrate)

    p = add_parser(subparsers, "backtest", "historical forecasts of a trained forecaster, scored")
    p.add_argument("checkpoint", help="a forecaster's run folder (e.g. runs/forecast), ensemble or checkpoint")
    p.add_argument("--start", required=True, help="the first forecast: a date as in the data (1959-01 or "
                   "1959-01-01), or an integer row (negative: counted from the end)")
    p.add_argument("--horizon", type=int, help="steps per forecast (default: the model's)")
    p.add_argument("--stride", type=int, default=1, help="steps between forecasts")
    p.add_argument("--retrain", type=int, nargs="?", const=1, default=0, metavar="K",
                   help="train a model anew (the checkpoint's settings) on the history before every K-th "
                   "forecast, an expanding window (--retrain alone: before each; default: never, the checkpoint "
                   "forecasts every time)")
    p.add_argument("--last-points-only", action="store_true", help="score the series of each forecast's last "
                   "point (darts' historical_forecasts default) instead of the mean over the forecasts")
    p.add_argument("--levels", help="the interval levels scored, in percent: coverage and the mean pinball loss "
                   "of the model's own intervals (default: the model's; none: the point forecasts only)")
    p.add_argument("--baselines", default=",".join(NUMPY_BASELINES), help="the baselines beside the model, of "
                   + ", ".join(BASELINE_NAMES) + " (ets and auto-arima: pip install 'rnnkit[forecast]')")
    p.add_argument("--data", metavar="FILE", help="a series file (default: the series it was trained on)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--plot", metavar="FILE.png", help="draw the series and every historical forecast")
    add_engine_arguments(p)
    p.set_defaults(func=cmd_backtest)


# ----------------------------------------------------------------------------------------- rnnkit export


def cmd_export(args) -> int:
    from rnnkit.tasks.export import export_checkpoint

    for graph in export_checkpoint(args.checkpoint, args.out, args.format, args.overwrite):
        print(f"wrote {graph['path']}: {graph['graph']} ({', '.join(graph['inputs'])} -> "
              f"{', '.join(graph['outputs'])}); dynamic axes: {', '.join(graph['dynamic'])}; "
              f"onnxruntime matches the model to {graph['error']:.1g}")
    return 0


def add_export_command(subparsers) -> None:
    from rnnkit.tasks.export import FORMATS

    p = add_parser(subparsers, "export", "export a trained model for other runtimes (ONNX)",
                   description="Export a trained model to ONNX (needs 'rnnkit[torch,onnx]'): a language model as "
                   "one step with its state in and out (for generation), a classifier from tokens and lengths to "
                   "probabilities, a translation model as two graphs (OUT.encode.onnx, OUT.decode_step.onnx), a "
                   "forecaster as its predict. Batch and time axes are dynamic; each graph is checked against "
                   "the model in onnxruntime after export.")
    p.add_argument("checkpoint", help="a checkpoint folder (e.g. runs/lm/best)")
    p.add_argument("--format", choices=FORMATS, default="onnx")
    p.add_argument("--out", metavar="FILE", help="the file to write (default: TASK.onnx, e.g. lm.onnx)")
    p.add_argument("--overwrite", action="store_true", help="replace existing files")
    p.set_defaults(func=cmd_export)


# ----------------------------------------------------------------------------------------- rnnkit diagnose


def cmd_diagnose(args) -> int:
    from rnnkit.tasks.diagnose import diagnose_checkpoint

    diagnosis = diagnose_checkpoint(args.checkpoint, args.data, args.length, args.batch_size, args.engine, args.seed)
    written = []
    if args.plot:
        from rnnkit import plots

        written = [str(p) for p in plots.plot_diagnosis(diagnosis, args.plot, name=str(args.checkpoint))]
    if args.json:
        print(json.dumps(dict(diagnosis.to_json(hidden=False), figures=written)))
        return 0
    print(diagnosis.summary())
    for path in written:
        print(f"wrote {path}")
    return 0


def add_diagnose_command(subparsers) -> None:
    p = add_parser(subparsers, "diagnose", "measure a trained model inside: the gradient through time, the gates, "
                   "W_hh's singular values, the hidden states")
    p.add_argument("checkpoint", help="a checkpoint folder (a run's best/ or last/) of lm, classify, memory, seq2seq "
                   "or forecast")
    p.add_argument("--data", metavar="FILE", help="the text to read (lm: a text file; classify: one text per line; "
                   "seq2seq: one source sentence per line, encoder and decoder measured; forecast: a series file, default "
                   "the training series; memory: not needed, sequences are generated)")
    p.add_argument("--length", type=int, help="steps per sequence (default: the training bptt, or the memory "
                   "problem's length)")
    p.add_argument("--batch-size", type=int, default=8, help="sequences measured together")
    p.add_argument("--seed", type=int, default=0, help="of the generated memory sequences")
    p.add_argument("--engine", choices=("scratch", "torch"), default="scratch",
                   help="scratch: ∂L/∂h_t from its hand-written BPTT; torch: from the layers unrolled with autograd")
    p.add_argument("--plot", metavar="DIR", help="write the figures (PNG) into DIR (needs matplotlib)")
    p.add_argument("--json", action="store_true", help="print the measurements as one JSON object")
    p.set_defaults(func=cmd_diagnose)


# ----------------------------------------------------------------------------------------- rnnkit explain


def cmd_explain(args) -> int:
    from rnnkit.tasks.explain import explain

    scale = "tiny" if args.tiny else "quick" if args.quick else "full"
    found = explain(args.out, scale, vectors=args.embeddings, workers=args.workers)
    print(f"measured in {found.seconds:.0f} s; wrote {args.out}/index.html and {args.out}/index.md")
    return 0


def add_explain_command(subparsers) -> None:
    p = add_parser(subparsers, "explain", "answer the six Points to Ponder by experiment: an HTML page (and Markdown) "
                   "with the measured figures")
    p.add_argument("--quick", action="store_true", help="small experiments, under 2 minutes on 2 cores")
    p.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)   # the tests' scale
    p.add_argument("--out", default="report", help="the folder of index.html, index.md and the figures")
    p.add_argument("--embeddings", metavar="FILE", help="GloVe/word2vec text vectors for the pretrained-embedding "
                   "run (default: vectors counted on the unlabelled training texts)")
    p.add_argument("--workers", type=int, help="processes running the experiments side by side (default: the "
                   "scale's, 2)")
    p.set_defaults(func=cmd_explain)


COMMANDS = [add_data_commands, add_train_commands, add_run_commands, add_use_commands, add_forecast_commands,
            add_export_command, add_diagnose_command, add_explain_command, add_serve_command, add_info_command]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rnnkit", description="Recurrent neural networks: data, training, "
                                     "evaluation and serving.", formatter_class=FORMATTER)
    parser.add_argument("-V", "--version", action="version", version=f"rnnkit {__version__}")
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


# options naming a file a command writes, and its kind (`rnnkit diagnose --plot` names a folder)
OUTPUT_FILES = {"report": "json", "confusion_png": "png", "attention_png": "png", "plot": "png"}


def check_outputs(args) -> None:
    """The files the command line names for writing, checked before the command runs (check_output): a
    long evaluation never ends in a refusal, and nothing of another kind is overwritten."""
    for name, kind in OUTPUT_FILES.items():
        value = getattr(args, name, None)
        if isinstance(value, str) and value and not (name == "plot" and args.func is cmd_diagnose):
            check_output(value, kind)


def main(argv=None) -> int:
    """Run the command line `argv` (default: sys.argv[1:]); return the exit code."""
    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(argv)
        unknown = [e for e in extra if e.startswith("-")] or (extra if getattr(args, "texts", None) is None else [])
        if unknown:
            parser.error(f"unrecognized arguments: {' '.join(unknown)}")
        if extra:  # texts after an option: `rnnkit predict CKPT --json "text"` (argparse stops at the option)
            args.texts = [*args.texts, *extra]
    except SystemExit as e:  # --help, --version, or a usage error (already printed by argparse)
        return 0 if e.code is None else e.code if isinstance(e.code, int) else 2
    try:
        check_outputs(args)
        return args.func(args)
    except USER_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except ImportError as e:  # an optional part not installed: its message names the extra to install
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:  # a training run's TrainingInterrupted has saved last/ and says so
        print(f"interrupted: {e}" if str(e) else "interrupted", file=sys.stderr)
        return getattr(e, "exit_code", 130)


if __name__ == "__main__":
    sys.exit(main())
