"""``epaiqa judge RUN_DIR --judge-model CLIENT``: a stage-3 run's explanations judged against the standard answers.

Reads ``RUN_DIR/explanations.jsonl`` (stage 3, or ``experiment=explain_zeroshot``) and the run's results record (the
model's name, the dataset root whose manifest gives each test sample's naturalness and harmony for the type split).
Each sample of Types 1–3 whose standard answer carries its CoT analyses is judged :data:`REPETITIONS` times (see
:mod:`epaiqa.judge.rules`); the replies are cached in ``OUT/judge_cache.jsonl`` as they arrive, so a killed run
resumes without asking anything twice. Writes ``OUT/judge_verdicts.jsonl`` (per sample: type, every raw reply,
the parsed verdicts, the voted scores) and ``OUT/judge.json`` (Table 4's row); ``OUT`` is ``RUN_DIR`` by default.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from epaiqa.data.manifest import load_manifest
from epaiqa.data.schema import has_explain_cot
from epaiqa.errors import DataError
from epaiqa.io import atomic_write_json, atomic_write_text
from epaiqa.judge.rules import REPETITIONS, criteria_of, final_scores, judge_type, parse_verdict, voted_scores
from epaiqa.llm.batch import Job, Usage, ask_all
from epaiqa.llm.cache import ReplyCache
from epaiqa.llm.client import make_client
from epaiqa.llm.prompt import Prompt
from epaiqa.llm.settings import ClientSettings, public
from epaiqa.prompts import prompts_digest, template
from epaiqa.records.results import find_records, read_record

EXPLANATIONS = "explanations.jsonl"
JUDGE = "judge.json"
VERDICTS = "judge_verdicts.jsonl"
CACHE = "judge_cache.jsonl"
PROMPT_FILES = ("judge.txt", "judge_scope_type1.txt", "judge_scope_followed.txt")
SCALE = (
    "per criterion: the mean over samples of the voted 0-2 score, divided by 2 "
    "(1.0 = full marks on every sample; the paper's Table 4 is on [0, 1])"
)


@dataclass
class Explained:
    """One judged test sample: its standard answer, the model's response and its type."""

    id: str
    kind: int
    edit_type: str | None
    prompt: str
    reference: str
    response: str


def read_explanations(run_dir: Path) -> list[dict[str, Any]]:
    """The rows of ``RUN_DIR/explanations.jsonl``; a :class:`DataError` naming the file and line if unreadable."""
    path = run_dir / EXPLANATIONS
    if not run_dir.is_dir():
        raise DataError(f"{run_dir}: {'run folder not found' if not run_dir.exists() else 'is not a directory'}")
    if not path.is_file():
        raise DataError(
            f"{run_dir}: no {EXPLANATIONS} here (judge a stage-3 run: experiment=stage3_explain or explain_zeroshot)"
        )
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise DataError(f"{path}:{number}: not valid JSON ({exc})") from None
        missing = [k for k in ("id", "explanation", "reference_answer") if not isinstance(row, dict) or k not in row]
        if missing:
            raise DataError(f"{path}:{number}: missing {', '.join(missing)}")
        rows.append(row)
    if not rows:
        raise DataError(f"{path}: holds no explanations")
    return rows


def run_identity(run_dir: Path, root: str | None) -> tuple[str, Path]:
    """The judged model's name and the dataset root, from the run's overall-task results record (or ``root``)."""
    records = [read_record(p) for p in find_records([run_dir])[0]]
    record = next((r for r in records if r.task == "overall"), records[0] if records else None)
    name = record.model if record is not None else run_dir.resolve().name
    found = root or (record.data.get("root") if record is not None else None)
    if not found:
        raise DataError(f"{run_dir}: no results.json names the dataset root; pass --root DATASET_ROOT")
    return name, Path(found)


def select(rows: list[dict[str, Any]], root: Path) -> tuple[list[Explained], dict[str, int]]:
    """The rows that fall in Types 1–3 and have a CoT standard answer, and how many were left out and why."""
    by_id = {s.id: s for s in load_manifest(root, check_images=False, check_splits=False)}
    chosen: list[Explained] = []
    left = {"left_out": 0, "no_reference_cot": 0, "not_in_manifest": 0}
    for row in rows:
        sample = by_id.get(str(row["id"]))
        if sample is None:
            left["not_in_manifest"] += 1
            continue
        kind = judge_type(*(sample.score(d) for d in ("completion", "naturalness", "harmony", "overall")))
        if kind is None:
            left["left_out"] += 1
        elif not has_explain_cot(sample):
            left["no_reference_cot"] += 1
        else:
            chosen.append(
                Explained(sample.id, kind, sample.edit_type, sample.prompt, row["reference_answer"], row["explanation"])
            )
    return chosen, left


#: appendix F's manually reviewed test samples per type (1, 2, 3): 300 in all
APPENDIX_F_QUOTAS = (106, 88, 106)


def take_quotas(samples: list[Explained], quotas: tuple[int, int, int], seed: int = 0) -> list[Explained]:
    """Per type, ``quotas[type - 1]`` samples drawn at random (seeded; all of a type that has fewer), in id order.

    Appendix F judges 300 reviewed test samples, 106 / 88 / 106 by type; without quotas every typed sample is.
    """
    import random

    chosen: list[Explained] = []
    for kind, quota in enumerate(quotas, start=1):
        of_kind = sorted((s for s in samples if s.kind == kind), key=lambda s: s.id)
        chosen += random.Random(f"{seed}:{kind}").sample(of_kind, min(quota, len(of_kind)))
    return sorted(chosen, key=lambda s: s.id)


def judge_prompt(sample: Explained) -> Prompt:
    """The judge's prompt for one sample (text only: the judge compares texts)."""
    scope = template("judge_scope_type1.txt" if sample.kind == 1 else "judge_scope_followed.txt").substitute()
    text = template("judge.txt").substitute(
        prompt=sample.prompt.strip(),
        standard_answer=sample.reference.strip(),
        response=sample.response.strip() or "(empty response)",
        scope=scope.strip(),
    )
    return Prompt((text,))


def judge_run(
    run_dir: str | Path,
    settings: ClientSettings,
    out: str | Path | None = None,
    root: str | None = None,
    repetitions: int = REPETITIONS,
    limit: int | None = None,
    progress: bool | None = None,
    quotas: tuple[int, int, int] | None = None,
) -> dict[str, Any]:
    """Judge a run's explanations; writes the verdicts and ``judge.json`` into ``out`` and returns the latter.

    ``quotas`` (per type 1, 2, 3; :data:`APPENDIX_F_QUOTAS` is the paper's) judges that many samples of each
    type, drawn at random with a fixed seed; without it every typed sample is judged.
    """
    run_dir = Path(run_dir)
    rows = read_explanations(run_dir)
    model, dataset_root = run_identity(run_dir, root)
    samples, left = select(rows, dataset_root)
    if quotas is not None:
        samples = take_quotas(samples, quotas)
    samples = samples[:limit] if limit is not None else samples
    out = Path(out) if out is not None else run_dir
    client = make_client(settings)
    jobs = [Job(s.id, r, judge_prompt(s)) for s in samples for r in range(repetitions)]
    usage = Usage(settings.client, price_input_per_mtok=settings.price_input_per_mtok,
                  price_output_per_mtok=settings.price_output_per_mtok)  # fmt: skip
    replies = ask_all(client, jobs, ReplyCache(out / CACHE), "judging", progress=progress, usage=usage)

    lines, voted, failures = [], [], 0
    for i, sample in enumerate(samples):
        texts = [r.text for r in replies[i * repetitions : (i + 1) * repetitions]]
        verdicts = [parse_verdict(t, sample.kind) for t in texts]
        failures += sum(v is None for v in verdicts)
        votes = voted_scores(verdicts, sample.kind)
        voted.append(votes)
        about = {"id": sample.id, "type": sample.kind, "edit_type": sample.edit_type}
        lines.append({**about, "criteria": list(criteria_of(sample.kind)), "votes": votes, "verdicts": verdicts,
                      "replies": texts})  # fmt: skip
    scores, counts = final_scores(voted)
    types = {f"type{k}": sum(s.kind == k for s in samples) for k in (1, 2, 3)}
    unjudged = sum(all(v is None for v in votes.values()) for votes in voted)
    total = len(jobs)
    summary: dict[str, Any] = {
        **scores,
        "n": {**counts, **types, **left, "unjudged": unjudged, "explanations": len(rows)},
        "parse_failures": failures,
        "replies": total,
        "parse_failure_rate": failures / total if total else None,
        "scale": SCALE,
        "model": model,
        "judge": settings.client,
        "repetitions": repetitions,
        "selection": "every typed sample" if quotas is None else f"per type at most {list(quotas)} (seeded draw)",
        "run_dir": str(run_dir.resolve()),
        "prompts": prompts_digest(*PROMPT_FILES),
        "usage": usage.to_json(),
        "judge_settings": public(settings),
    }
    atomic_write_text(out / VERDICTS, "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines))
    atomic_write_json(out / JUDGE, summary)
    return summary
