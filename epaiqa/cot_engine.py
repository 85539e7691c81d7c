"""``epaiqa cot ROOT --annotators A,B,C``: the cross-model annotation-validation CoT data engine (§4.3, Fig. 9).

For each sample of the overall subset's training split (``--split test``: its test split, the judge's standard
answers, marked so in the provenance and never trained on), one annotator drawn at random (seeded per sample) from the
clients writes the CoT pieces of the sample's scenario, given the paper's inputs (source, edited image, prompt,
bbox and the human-labelled levels):

- prompt completion 1 or 2: one piece, ``completion`` — why the prompt is not (or only partly) followed;
- prompt completion 3: three pieces, ``completion``, ``naturalness`` (with the edited area's crop) and ``harmony``,
  each explaining the human-labelled level.

Every other client scrutinises each piece; a piece is kept only if all of them (the paper's two) approve. Kept
pieces go into the manifest's ``cot`` fields through the same safe writer as ``epaiqa prepare`` (checked first,
the old manifest kept as ``manifest.jsonl.bak``, written atomically); a section whose new piece was rejected is
removed, so a sample never mixes pieces of two runs and leaves stage 3 (its CoT is incomplete) until annotated
again. Samples whose CoT is already complete are skipped unless ``overwrite``. Who wrote and who approved what,
with every raw reply, goes to ``ROOT/cot_provenance.jsonl``; replies are cached in ``ROOT/cot_cache.jsonl`` as
they arrive, so a killed run resumes without asking anything twice. The prompts are data files in
``epaiqa/prompts/`` (``cot_*.txt``).
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from epaiqa.data.crops import crop_region
from epaiqa.data.images import load_rgb
from epaiqa.data.levels import bin_level
from epaiqa.data.manifest import check_samples, load_manifest, write_manifest
from epaiqa.data.prepare import keep_backup as backup_file
from epaiqa.data.schema import MANIFEST, SPLITS, PAISample
from epaiqa.data.splits import check_splits, load_splits
from epaiqa.errors import ConfigError, DataError
from epaiqa.io import atomic_write_text
from epaiqa.llm.batch import Job, Usage, ask_all
from epaiqa.llm.cache import ReplyCache
from epaiqa.llm.client import make_client
from epaiqa.llm.prompt import ImagePart, Part, Prompt
from epaiqa.llm.replies import json_objects
from epaiqa.llm.settings import ClientSettings
from epaiqa.prompts import prompts_digest, template

PROVENANCE = "cot_provenance.jsonl"
CACHE = "cot_cache.jsonl"
#: the pieces of each scenario (§4.3)
LOW_COMPLETION_SECTIONS: tuple[str, ...] = ("completion",)
FOLLOWED_SECTIONS: tuple[str, ...] = ("completion", "naturalness", "harmony")
#: what the human raters said, per completion level, in the prompts' words
JUDGEMENTS = {1: "does not follow the prompt at all", 2: "follows the prompt only partly"}
REGION_SENTENCE = "The edited area is: [region]."
PROMPT_FILES = (
    "cot_context.txt",
    "cot_completion_not_followed.txt",
    "cot_completion_followed.txt",
    "cot_naturalness.txt",
    "cot_harmony.txt",
    "cot_scrutiny.txt",
)
#: samples whose images are held in memory at once
CHUNK = 32
_MARKER = re.compile(r"\[(source|edited|region)\]")


def draw_annotator(sample_id: str, seed: int, n: int) -> int:
    """The annotator of a sample: a seeded draw of its own, so it depends on neither order nor ``limit``."""
    return random.Random(f"{seed}:{sample_id}").randrange(n)


def completion_of(sample: PAISample) -> int:
    """The sample's prompt completion level, 1..3."""
    value = sample.score("completion")
    if value is None or round(value) not in (1, 2, 3):
        raise DataError(f"sample {sample.id!r}: prompt completion must be 1..3, got {value}")
    return round(value)


def sections_of(sample: PAISample) -> tuple[str, ...]:
    """The pieces a sample's scenario asks for."""
    return FOLLOWED_SECTIONS if completion_of(sample) == 3 else LOW_COMPLETION_SECTIONS


def has_complete_cot(sample: PAISample) -> bool:
    """Whether the sample already has every piece its scenario asks for."""
    return all((sample.cot or {}).get(s, "").strip() for s in sections_of(sample))


def claim(sample: PAISample, section: str) -> str:
    """What the human raters said about a piece's dimension, as the scrutiny prompt puts it."""
    if section == "completion":
        level = completion_of(sample)
        return f"this edit {JUDGEMENTS[level]}" if level < 3 else "this edit fully follows the prompt"
    level = bin_level(float(sample.score(section)))  # type: ignore[arg-type]
    if section == "naturalness":
        return f"the naturalness of the edited area is {level}"
    return f"the harmony between the edited area and the overall image is {level}"


class Images:
    """A sample's three images as prompt parts (encoded once per sample)."""

    def __init__(self, root: Path, sample: PAISample) -> None:
        edited = load_rgb(root / sample.edited)
        self.parts = {
            "source": ImagePart.from_image(load_rgb(root / sample.source)),
            "edited": ImagePart.from_image(edited),
            "region": ImagePart.from_image(crop_region(edited, sample.bbox)),
        }

    def fill(self, text: str) -> tuple[Part, ...]:
        """``text`` split at its ``[source]`` / ``[edited]`` / ``[region]`` markers, the images put there."""
        parts: list[Part] = []
        for i, piece in enumerate(_MARKER.split(text)):
            parts.append(self.parts[piece] if i % 2 else piece)
        return tuple(p for p in parts if p != "")


def _context(sample: PAISample) -> str:
    x, y, w, h = (round(100 * v, 1) for v in sample.bbox)
    return template("cot_context.txt").substitute(
        prompt=sample.prompt.strip(), centre_x=x, centre_y=y, width=w, height=h
    )


def annotation_prompt(sample: PAISample, section: str, images: Images) -> Prompt:
    """The annotator's prompt for one piece."""
    if section == "completion":
        level = completion_of(sample)
        task = template("cot_completion_followed.txt" if level == 3 else "cot_completion_not_followed.txt")
        text = task.substitute(judgement=JUDGEMENTS.get(level, ""))
    else:
        text = template(f"cot_{section}.txt").substitute(level=bin_level(float(sample.score(section))))  # type: ignore[arg-type]
    return Prompt(images.fill(_context(sample).strip() + "\n" + text))


def scrutiny_prompt(sample: PAISample, section: str, piece: str, images: Images) -> Prompt:
    """A scrutiniser's prompt: the annotator's inputs, the human judgement and the piece to approve or reject."""
    region = REGION_SENTENCE + "\n" if section == "naturalness" else ""
    text = template("cot_scrutiny.txt").substitute(claim=claim(sample, section), piece=piece)
    return Prompt(images.fill(_context(sample).strip() + "\n" + region + text))


def clean_piece(text: str) -> str:
    """An annotator's reply as a CoT piece: code fences, surrounding quotes and line breaks removed."""
    text = re.sub(r"^```[a-zA-Z]*\s*|\s*```$", "", text.strip())
    text = " ".join(text.split())
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        text = text[1:-1].strip()
    return text


_YES = ("approve", "approved", "yes", "true")
_NO = ("reject", "rejected", "no", "false")


def parse_approval(text: str) -> bool | None:
    """A scrutiniser's verdict: True (approve), False (reject), or None when the reply says neither.

    ``approve`` of the first JSON object that has it, else the reply's first word (approve/yes, reject/no). None is a
    parse failure, counted as not approved.
    """
    for candidate in json_objects(text):
        keys = {str(k).lower(): v for k, v in candidate.items()}
        if "approve" not in keys:
            continue
        value = keys["approve"]
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _YES + _NO:
            return value.strip().lower() in _YES
        return None
    words = re.findall(r"[a-z]+", text.lower())
    if words and words[0] in _YES:
        return True
    if words and words[0] in _NO:
        return False
    return None


@dataclass
class Piece:
    """One CoT piece: who wrote it, the text, and each scrutiniser's verdict."""

    sample_id: str
    section: str
    annotator: str
    annotator_index: int
    text: str = ""
    raw: str = ""
    verdicts: list[dict[str, Any]] = field(default_factory=list)

    @property
    def kept(self) -> bool:
        """Written, and approved by every scrutiniser."""
        return bool(self.text) and bool(self.verdicts) and all(v["approve"] is True for v in self.verdicts)


@dataclass
class CotResult:
    """What a run of the engine did."""

    pieces: list[Piece]
    skipped: int
    usage: list[Usage]

    def summary(self) -> str:
        """A few lines: samples, pieces kept per section, scrutiny parse failures, requests and tokens per client."""
        kept, written = Counter(), Counter()
        for p in self.pieces:
            written[p.section] += 1
            kept[p.section] += p.kept
        failures = sum(v["approve"] is None for p in self.pieces for v in p.verdicts)
        verdicts = sum(len(p.verdicts) for p in self.pieces)
        samples = len({p.sample_id for p in self.pieces})
        lines = [
            f"{samples} samples annotated ({self.skipped} skipped: their CoT is complete; --overwrite redoes them)",
            "kept (approved by every scrutiniser): "
            + ", ".join(f"{s} {kept[s]}/{written[s]}" for s in FOLLOWED_SECTIONS if written[s]),
            f"scrutiny replies that were no verdict: {failures} of {verdicts}",
        ]
        lines += [u.summary() for u in self.usage]
        return "\n".join(lines)


#: which part of the overall subset the engine annotates: the training split (the CoT that stage 3 learns) or the
#: test split (the standard answers the judge compares explanations with; never used for training)
COT_SPLITS = ("train", "test")


def _split_samples(root: Path, split: str) -> list[PAISample]:
    samples = load_manifest(root)
    by_id = {s.id: s for s in samples}
    return [by_id[i] for i in load_splits(root, samples)["overall"][split]]


def _ask(
    clients: list[ClientSettings],
    jobs: dict[int, list[tuple[Job, Piece]]],
    cache: ReplyCache,
    usages: list[Usage],
    label: str,
    progress: bool | None,
) -> dict[int, list[str]]:
    """Each client's jobs asked through the cache; the reply texts by client index (tokens counted in ``usages``)."""
    texts = {}
    for index, batch in sorted(jobs.items()):
        client = make_client(clients[index])
        replies = ask_all(client, [j for j, _ in batch], cache, label, progress=progress, usage=usages[index])
        texts[index] = [r.text for r in replies]
    return texts


def annotate(
    samples: list[PAISample], root: Path, clients: list[ClientSettings], seed: int, cache: ReplyCache,
    usages: list[Usage], label: str = "", progress: bool | None = None,
) -> list[Piece]:  # fmt: skip
    """Fig. 9 for some samples: each sample's drawn annotator writes its pieces, every other client scrutinises."""
    names = [c.client for c in clients]
    images = {s.id: Images(root, s) for s in samples}
    writing: dict[int, list[tuple[Job, Piece]]] = defaultdict(list)
    pieces: list[Piece] = []
    for sample in samples:
        who = draw_annotator(sample.id, seed, len(clients))
        for section in sections_of(sample):
            piece = Piece(sample.id, section, names[who], who)
            pieces.append(piece)
            writing[who].append((Job(sample.id, who, annotation_prompt(sample, section, images[sample.id])), piece))
    texts = _ask(clients, writing, cache, usages, f"annotating{label}", progress)
    for who, batch in writing.items():
        for (_, piece), text in zip(batch, texts[who], strict=True):
            piece.raw, piece.text = text, clean_piece(text)

    by_id = {s.id: s for s in samples}
    checking: dict[int, list[tuple[Job, Piece]]] = defaultdict(list)
    for piece in pieces:
        if not piece.text:
            continue
        prompt = scrutiny_prompt(by_id[piece.sample_id], piece.section, piece.text, images[piece.sample_id])
        for other in range(len(clients)):
            if other != piece.annotator_index:
                checking[other].append((Job(piece.sample_id, other, prompt), piece))
    verdicts = _ask(clients, checking, cache, usages, f"scrutinising{label}", progress)
    for other, batch in sorted(checking.items()):
        for (_, piece), text in zip(batch, verdicts[other], strict=True):
            piece.verdicts.append({"client": names[other], "approve": parse_approval(text), "reply": text})
    return pieces


def merge_pieces(root: Path, pieces: list[Piece]) -> list[PAISample]:
    """The manifest with the pieces merged into the ``cot`` fields (a rejected piece removes its section)."""
    by_sample: dict[str, list[Piece]] = defaultdict(list)
    for piece in pieces:
        by_sample[piece.sample_id].append(piece)
    merged = []
    for sample in load_manifest(root, check_images=False):
        if sample.id in by_sample:
            cot = dict(sample.cot or {})
            for piece in by_sample[sample.id]:
                if piece.kept:
                    cot[piece.section] = piece.text
                else:
                    cot.pop(piece.section, None)
            sample = replace(sample, cot=cot)
        merged.append(sample)
    return merged


def write_merged(root: Path, samples: list[PAISample]) -> None:
    """``epaiqa prepare``'s safe writing: everything checked first, the old manifest kept as ``.bak``, atomic."""
    problems = [str(p) for p in check_samples(root, samples)]
    by_id = {s.id: s for s in samples}
    splits = json.loads((root / SPLITS).read_text(encoding="utf-8"))
    problems += [f"{SPLITS}:0: {f}: {m}" for f, m in check_splits(splits, by_id, by_id)]
    if problems:
        raise DataError(f"{root}: the CoT merge would write an invalid dataset, nothing was written:", problems)
    backup_file(root / MANIFEST)
    write_manifest(root, samples)


def provenance_line(piece: Piece, prompts: str, split: str = "train") -> dict[str, Any]:
    """One side-file line: the piece, its split, annotator, scrutinisers, verdicts and raw replies."""
    return {
        "id": piece.sample_id,
        "split": split,
        "role": "training CoT" if split == "train" else "standard answer (judge only, never trained on)",
        "section": piece.section,
        "kept": piece.kept,
        "annotator": piece.annotator,
        "scrutinisers": [v["client"] for v in piece.verdicts],
        "verdicts": piece.verdicts,
        "text": piece.text,
        "raw": piece.raw,
        "prompts": prompts,
    }


def write_provenance(root: Path, pieces: list[Piece], split: str = "train") -> None:
    """The side file: earlier lines of other (sample, section) pairs kept, this run's lines after them."""
    path = root / PROVENANCE
    redone = {(p.sample_id, p.section) for p in pieces}
    kept = []
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                entry = json.loads(line)
                if (entry["id"], entry["section"]) not in redone:
                    kept.append(line + "\n")
            except (ValueError, KeyError, TypeError):
                continue
    prompts = prompts_digest(*PROMPT_FILES)
    lines = [json.dumps(provenance_line(p, prompts, split), ensure_ascii=False) + "\n" for p in pieces]
    atomic_write_text(path, "".join(kept + lines))


def run_cot_engine(
    root: str | Path,
    annotators: list[ClientSettings],
    seed: int = 0,
    limit: int | None = None,
    overwrite: bool = False,
    progress: bool | None = None,
    chunk: int = CHUNK,
    split: str = "train",
) -> CotResult:
    """Annotate, scrutinise and merge (see the module), ``chunk`` samples at a time; returns what was done.

    ``split="test"`` writes the test split's standard answers for the judge (Table 4) the same way; the
    provenance marks them, and no stage trains on a test id.
    """
    root = Path(root)
    if split not in COT_SPLITS:
        raise ConfigError(
            f"the CoT engine annotates the overall subset's {' or '.join(COT_SPLITS)} split, not {split!r}"
        )
    if len(annotators) < 2:
        raise ConfigError("the CoT engine needs at least two annotators (the paper's three), to scrutinise each other")
    for settings in annotators:
        if not settings.vision:
            raise ConfigError(f"{settings.client} is set up without images (vision: false): it cannot annotate PAIs")
    samples = _split_samples(root, split)
    todo = [s for s in samples if overwrite or not has_complete_cot(s)]
    skipped = len(samples) - len(todo)
    todo = todo[:limit] if limit is not None else todo
    cache = ReplyCache(root / CACHE)
    usages = [Usage(a.client, price_input_per_mtok=a.price_input_per_mtok,
                    price_output_per_mtok=a.price_output_per_mtok) for a in annotators]  # fmt: skip
    pieces: list[Piece] = []
    for start in range(0, len(todo), chunk):
        part = todo[start : start + chunk]
        label = f" {start + 1}-{start + len(part)}/{len(todo)}" if len(todo) > chunk else ""
        pieces += annotate(part, root, annotators, seed, cache, usages, label, progress)
    if pieces:
        write_merged(root, merge_pieces(root, pieces))
        write_provenance(root, pieces, split)
    return CotResult(pieces, skipped, usages)
