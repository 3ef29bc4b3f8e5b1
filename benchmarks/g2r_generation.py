"""What G2R's data-level stage costs and yields: the LM writing one positive per training question.

The G2R teacher's generation, as ``experiment=g2r`` runs it (packaged SmolLM2-135M-Instruct through
``LocalChat``, the prompt and decoding of ``conf/teacher/g2r.yaml``), on SQuAD-open training questions:

    python benchmarks/g2r_generation.py                 # 32 questions
    python benchmarks/g2r_generation.py --questions 64

Measures seconds, units and generated tokens per second, what was kept or dropped as garbage, how often a
unit contains the gold answer (whole words, as the answer-hit metrics match), the time of the same call
again (read from the unit cache), and extrapolates linearly to the 1,000 questions of the full-scale runs.
Writes ``benchmarks/results/g2r_generation.md`` and prints it.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from typing import Any, cast

import torch
from omegaconf import OmegaConf
from teacher_setup import ROOT, load_lm, publish

from ragdistill.data.squad import load_squad_open
from ragdistill.models.local_chat import LocalChat
from ragdistill.teachers.g2r import answer_hits
from ragdistill.teachers.unit_generation import UnitGenerator
from ragdistill.utils.quiet import quiet_third_party

FULL_SCALE_QUESTIONS = 1000


def _plain(node: Any) -> dict[str, Any]:
    """A config mapping as a plain dict (the G2R file's ``chat`` overrides the local chat's defaults)."""
    return cast(dict[str, Any], OmegaConf.to_container(node))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--questions", type=int, default=32)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    quiet_third_party()
    torch.manual_seed(0)
    g2r = OmegaConf.load(ROOT / "conf" / "teacher" / "g2r.yaml")
    local = _plain(OmegaConf.load(ROOT / "conf" / "teacher" / "chat" / "local.yaml").chat)
    chat_settings = {k: v for k, v in local.items() if k not in ("_target_", "lm")} | _plain(g2r.chat)
    data = load_squad_open(n_train=args.questions, n_eval=0, corpus_size=1000, seed=args.seed)
    lm = load_lm()
    chat = LocalChat(lm, **chat_settings)
    with tempfile.TemporaryDirectory() as cache_dir:
        generator = UnitGenerator(chat, g2r.prompt, per_question=1, min_chars=g2r.min_chars, cache_dir=cache_dir)
        start = time.perf_counter()
        units = generator.generate(data.train)
        seconds = time.perf_counter() - start
        stats = generator.stats
        start = time.perf_counter()
        generator.generate(data.train)
        cached_seconds = time.perf_counter() - start
    texts = [unit for per_question in units.values() for unit in per_question]
    tokens = sum(len(lm.tokenizer(unit.text, add_special_tokens=False)["input_ids"]) for unit in texts)
    answered = sum(answer_hits(units, {q.id: q for q in data.train}))  # each unit against its own question
    sample = texts[0].text.replace("\n", " ")[:300] if texts else "(none)"
    lines = [
        "# G2R data level: generating positives with SmolLM2-135M-Instruct",
        "",
        f"Command: `python benchmarks/g2r_generation.py --questions {args.questions}` ({len(data.train)} SQuAD-open "
        f"training questions, one unit each, `conf/teacher/g2r.yaml`'s prompt, greedy, "
        f"{chat_settings['max_new_tokens']} new tokens at most, {chat_settings['precision']}, "
        f"{torch.get_num_threads()} CPU threads).",
        "",
        "| figure | value |",
        "|---|---|",
        f"| generation time | {seconds:.1f} s ({seconds / max(stats.generated, 1):.2f} s per unit) |",
        f"| generated tokens (kept units) | {tokens:,} ({tokens / seconds:.1f} tokens/s) |",
        f"| units kept / dropped as garbage | {stats.kept} / {stats.dropped} |",
        f"| kept units containing the gold answer | {answered} / {stats.kept} |",
        f"| the same call again (unit cache) | {cached_seconds:.2f} s |",
        f"| extrapolated to {FULL_SCALE_QUESTIONS:,} questions | "
        f"{seconds / len(data.train) * FULL_SCALE_QUESTIONS / 60:.0f} min |",
        "",
        f"A unit: “{sample}”",
    ]
    report = "\n".join(lines) + "\n"
    publish(report, "g2r_generation.md")


if __name__ == "__main__":
    main()
