"""The translation endpoint of `rnnkit serve` (a seq2seq checkpoint): POST /translate, batched.

    POST /translate  {"texts": [...], "beam": 5, "n_best": 2, "length_penalty": 0.6, "max_length": 40}
                  -> {"translations": [{"source", "source_tokens", "translations": [{"text", "tokens",
                      "score", "log_prob", "finished"}, ...]}, ...]}   (one per text, each its n best, best first)

The request has the same limits as /predict (texts per request, characters per text, the body size) and the
model's own: at most `max_source_length` source tokens per text (4 x the longest training source, stored
in the checkpoint). A text that is empty, over that limit, or whose every token is unknown to the model
is refused with 422 and the reason, naming the text (`texts[i]`). The search's defaults are those of
`rnnkit translate` (rnnkit/tasks/settings.py's Decoding); `max_length` caps the output tokens of every text
(default: 1.5 x its source length + 5, the decoder's own rule), within the server's --max-tokens.

Texts go through the server's dynamic batcher (batching.py) as jobs: concurrent requests with the same
search settings are decoded as one batch on the model thread; a job counts as its tokens x the beam width
against --max-batch-tokens, as that is the work its beams make.
"""

import math
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

MAX_BEAM = 16          # the widest beam a request may ask for (the work grows with it)


# ------------------------------------------------------------------------------------------------ models

class Candidate(BaseModel):
    text: str = Field(description="the translation, detokenised")
    tokens: list[str] = Field(description="its target tokens")
    score: float = Field(description="log P / ((5 + length) / 6)^length_penalty: what the n best are ranked by")
    log_prob: float = Field(description="the log-probability of the tokens and the end mark")
    finished: bool = Field(description="false if the search stopped at the length limit before the end mark")


class TranslatedText(BaseModel):
    source: str
    source_tokens: list[str] = Field(description="the text as the model read it")
    translations: list[Candidate] = Field(description="the n best, best first")


class TranslateResponse(BaseModel):
    translations: list[TranslatedText] = Field(description="one per text, in the order of the texts")


class TranslationInfo(BaseModel):
    source_vocab_size: int
    target_vocab_size: int
    level: str = Field(description="tokens: word or char")
    lower: bool = Field(description="texts are lower-cased first")
    attention: str
    max_source_tokens: int = Field(description="the most source tokens a text may have")
    dataset: str | None = Field(description="what the model was trained on (a dataset, a generator or a file)")
    decoding_defaults: dict[str, Any]


def request_model(settings, text_type, integer):
    """The POST /translate body, with this server's limits (`text_type`, `integer` are app.py's)."""
    from pydantic import ConfigDict, model_validator
    from pydantic_core import PydanticCustomError

    from ..tasks.settings import Decoding

    default = {f.name: f.default for f in fields(Decoding)}
    s = settings

    class TranslateRequest(BaseModel):
        model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, json_schema_extra={
            "examples": [{"texts": ["123+45"]},
                         {"texts": ["I am hungry.", "Where is the station?"], "beam": 5, "n_best": 2,
                          "length_penalty": 0.6, "max_length": 30}]})
        texts: list[text_type] = Field(min_length=1, max_length=s.max_texts,
                                       description=f"1 to {s.max_texts} texts of at most {s.max_chars} "
                                                   "characters, in the model's source language")
        beam: integer(ge=1, le=MAX_BEAM) = Field(default["beam"], description="beam width (1: greedy search)")
        n_best: integer(ge=1, le=MAX_BEAM) = Field(default["n_best"],
                                                   description="translations per text, best first (at most beam)")
        length_penalty: float = Field(default["length_penalty"], ge=0, le=10,
                                      description="GNMT's alpha: scores are log P / ((5 + length) / 6)^alpha")
        max_length: integer(ge=1, le=s.max_tokens) | None = Field(
            None, description=f"the most tokens of each translation (default: {default['max_ratio']:g} x its source "
                              f"length + {default['max_offset']:g})")

        @model_validator(mode="after")
        def _n_best_within_beam(self):
            if self.n_best > self.beam:
                raise PydanticCustomError("n_best_over_beam", "n_best ({n_best}) must be at most beam ({beam})",
                                          {"n_best": self.n_best, "beam": self.beam})
            return self

        def decoding(self):
            ratio = {} if self.max_length is None else {"max_ratio": 0.0, "max_offset": float(self.max_length)}
            return Decoding(beam=self.beam, n_best=self.n_best, length_penalty=self.length_penalty, **ratio)

    return TranslateRequest


# ------------------------------------------------------------------------------------------------ the work

@dataclass(frozen=True)
class Job:
    """One text for the batcher: its source ids and its search; len() is the work it makes (tokens x beam)."""

    ids: np.ndarray
    decoding: Any

    def __len__(self) -> int:
        return len(self.ids) * self.decoding.beam


def run_jobs(model, batch_size: int):
    """The batcher's `run`: Jobs -> n-best lists of Hypothesis, the jobs of one search decoded together."""
    from ..tasks.seq2seq import translate_ids

    def run(jobs: list) -> list:
        out: list = [None] * len(jobs)
        groups: dict = {}              # the search's settings -> the jobs that use them
        for i, job in enumerate(jobs):
            groups.setdefault(tuple(job.decoding.search().items()), []).append(i)
        for rows in groups.values():
            decoding = jobs[rows[0]].decoding
            found = translate_ids(model.engine, [jobs[i].ids for i in rows], decoding, batch_size)
            for i, hyps in zip(rows, found):
                out[i] = hyps
        return out

    return run


def warm_up(model) -> None:
    """One greedy translation of a one-token source (first-use allocations happen now)."""
    from ..tasks.seq2seq import translate_ids
    from ..tasks.settings import Decoding

    first = min(len(model.source_vocab) - 1, 4)      # past the four specials, when there is such a token
    translate_ids(model.engine, [np.array([first], dtype=np.int64)], Decoding(max_ratio=0.0, max_offset=1.0))


def info(model) -> dict:
    from ..tasks.settings import Decoding

    config = model.config
    return {"source_vocab_size": len(model.source_vocab), "target_vocab_size": len(model.target_vocab),
            "level": model.tokenizer.level, "lower": bool(model.tokenizer.lower),
            "attention": str(config["model"].get("attention")), "max_source_tokens": model.max_source_length,
            "dataset": config["data"].get("dataset") or config["data"].get("data"),
            "decoding_defaults": {f.name: f.default for f in fields(Decoding)}}


def _finite(x: float) -> float:
    """JSON has no infinities: a (never expected) -inf log-probability goes out as the lowest float."""
    return float(x) if math.isfinite(x) else -1.7976931348623157e308


def add_route(app, served, request_type, responses: dict, invalid) -> None:
    """POST /translate on `app`; `invalid(field_index, type, message)` raises app.py's 422."""

    @app.post("/translate", response_model=TranslateResponse, responses=responses, summary="Translate texts")
    async def translate(body: request_type):
        model, decoding = served.model, body.decoding()
        jobs = []
        for i, text in enumerate(body.texts):
            try:
                jobs.append(Job(model.source_ids(text), decoding))
            except ValueError as e:       # no tokens, too many tokens, every token unknown
                tokens = model.tokenizer.tokenize(text)
                kind = ("no_tokens" if not tokens else "too_many_tokens" if len(tokens) > model.max_source_length
                        else "all_tokens_unknown")
                invalid(i, kind, str(e))
        found = await served.batcher.submit(jobs)
        out = []
        for text, hyps in zip(body.texts, found):
            candidates = []
            for h in hyps:
                tokens = model.target_vocab.decode(h.tokens)
                candidates.append({"text": model.tokenizer.detokenize(tokens), "tokens": tokens,
                                   "score": _finite(h.score), "log_prob": _finite(h.log_prob),
                                   "finished": h.finished})
            out.append({"source": text, "source_tokens": model.tokenizer.tokenize(text),
                        "translations": candidates})
        return {"translations": out}
