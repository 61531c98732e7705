"""Planted-bug (mutation) check of the parity suite; run by hand, not in CI.

Each `Mutant` below is a bug a real refactor could introduce: an exact source snippet of one file
(it must occur exactly once, so a mutant whose code moved is reported as stale instead of silently
testing nothing), its replacement, and the narrow pytest selection that should catch it.

The script snapshots the repository's files (``git ls-files -co --exclude-standard``) once into a
temporary directory; every run gets a fresh copy of that snapshot (not a git worktree), plants its
bug there and runs ``python -m pytest -x -q -p no:cacheprovider <selection>`` in the copy with
``PYTHONPATH`` set to it (checked first: ``isoform`` must resolve inside the copy, not to the
editable install). Results: ``caught`` (tests failed), ``survived`` (all passed: the suite cannot
see this bug), ``error`` (collection/usage error: the mutant was not really tested), ``stale``,
``timeout``. First the distinct selections run once unmutated (baseline); if one fails, no mutant runs.

    python -m tools.mutants --list                  # the mutants, and whether their snippets still match
    python -m tools.mutants                         # baseline + every mutant (tens of minutes)
    python -m tools.mutants --only bert-attention-scale --only bart-final-logits-bias-dropped --jobs 2

The table is printed and written to ``tools/mutants-results.json``. Exit status: 0 if every mutant
was caught, 1 if any was not (survived, error, stale, timeout), 2 if a snippet is stale before
anything runs or the baseline fails.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "tools" / "mutants-results.json"
PYTEST = ("-m", "pytest", "-x", "-q", "-p", "no:cacheprovider")
SUMMARY = re.compile(r"\b(passed|failed|errors?|skipped|deselected|no tests ran)\b.* in [\d.]+s")


@dataclass(frozen=True)
class Mutant:
    """One planted bug: replace ``old`` (exactly once in ``path``) by ``new``; ``tests`` (+ ``-k``) should fail."""

    name: str
    path: str  # relative to the repository root
    old: str
    new: str
    tests: tuple[str, ...]
    k: str | None = None
    why: str = ""

    @property
    def selection(self) -> tuple[str, ...]:
        return (*self.tests, *(("-k", self.k) if self.k else ()))


# -- selections (numpy + torch backends only, to stay well under two minutes on two cores) -------
BERT = ("tests/test_bert_family.py",)
BERT_K = "test_parity and (numpy or torch)"
DECODERS = ("tests/test_decoders.py",)
LLAMA_K = "test_parity and (numpy or torch) and (llama or mistral or qwen2)"
SEQ2SEQ = ("tests/test_seq2seq.py",)
BART_K = "test_parity and (numpy or torch) and bart and seq2seq-lm"  # bart, bart-scaled-relu, mbart
SAMPLING = ("tests/test_generate_processors.py", "tests/test_generate.py")
SAMPLING_K = "composed_processors_match_transformers or (seeded_sampling and (numpy or torch))"
TOKENIZER_ERRORS = ("tests/test_tokenization_errors.py",)

MUTANTS: list[Mutant] = [
    # -- from the issue ------------------------------------------------------------------------
    Mutant("linear-bias-not-added", "isoform/layers/linear.py",
           old='    return y + g.param(f"{name}.bias", [out_features]) if bias else y\n',
           new='    if bias:\n        g.param(f"{name}.bias", [out_features])  # loaded, never added\n    return y\n',
           tests=BERT, k=BERT_K, why="every linear layer drops its bias"),
    Mutant("layernorm-affine-ignored", "isoform/layers/norm.py",
           old='    return fn.layer_norm(x, g.param(f"{name}.weight", [dim]), g.param(f"{name}.bias", [dim]), eps=eps)\n',
           new='    g.param(f"{name}.weight", [dim]), g.param(f"{name}.bias", [dim])  # loaded, then ignored\n'
               '    return fn.layer_norm(x, eps=eps)\n',
           tests=BERT, k=BERT_K, why="LayerNorm weight and bias loaded but not applied"),
    Mutant("rmsnorm-weight-ignored", "isoform/layers/norm.py",
           old='    return fn.rms_norm(x, eps=eps) * x.builder.param(f"{name}.weight", [dim])\n',
           new='    x.builder.param(f"{name}.weight", [dim])  # loaded, then ignored\n'
               '    return fn.rms_norm(x, eps=eps)\n',
           tests=DECODERS, k=LLAMA_K, why="RMSNorm weight loaded but not applied"),
    Mutant("bart-final-logits-bias-dropped", "isoform/architectures/bart.py",
           old="        return unembed(x, weight, bias)\n",
           new="        return unembed(x, weight, None)\n",
           tests=SEQ2SEQ, k=BART_K, why="BART family: final_logits_bias loaded, never added"),
    Mutant("sampling-temperature-dropped", "isoform/generation/processors.py",
           old="            out.append(temperature(c.temperature))\n",
           new="            pass  # temperature never applied\n",
           tests=SAMPLING, k=SAMPLING_K, why="processors.build skips temperature"),
    Mutant("sampling-top-p-dropped", "isoform/generation/processors.py",
           old="            out.append(top_p(c.top_p, keep))\n",
           new="            pass  # top_p never applied\n",
           tests=SAMPLING, k=SAMPLING_K, why="processors.build skips top_p"),
    Mutant("seq2seq-reorder-keeps-cross-cache", "isoform/generation/decoder.py",
           old="(rows.shape != self._rows.shape or (rows != self._rows).any()):\n",
           new="(rows.shape != self._rows.shape):\n",
           tests=("tests/test_seq2seq_cache.py", "tests/test_seq2seq_generate.py"),
           k="reorder and (numpy or torch) or generate_matches and numpy and (Bart or T5)",
           why="a same-size permutation across sources keeps the old cross keys/values"),
    Mutant("distilbert-token-type-ids", "isoform/tokenization/families/wordpiece.py",
           old='WITHOUT_TYPES if tokenizer_class == "DistilBertTokenizer" else self.input_names',
           new='self.input_names',
           tests=("tests/test_tokenization.py",), k="distilbert",
           why="DistilBERT tokenizer returns token_type_ids by default"),
    Mutant("tokenizer-error-mixed-pairs", "isoform/tokenization/batch.py",
           old='        raise TokenizerError("a batch must be all single texts or all pairs")\n',
           new='        raise TokenizerError("invalid input")\n',
           tests=TOKENIZER_ERRORS, why="an actionable error message replaced by 'invalid input'"),
    Mutant("tokenizer-error-text-pair-length", "isoform/tokenization/batch.py",
           old='            raise TokenizerError("text_pair must be a list with one entry per text")\n',
           new='            raise TokenizerError("invalid input")\n',
           tests=TOKENIZER_ERRORS, why="an actionable error message replaced by 'invalid input'"),
    Mutant("bert-attention-scale", "isoform/layers/attention.py",
           old="    return merge_heads(fn.attention(q, k, v, mask, causal=causal))\n",
           new="    return merge_heads(fn.attention(q * 1.5, k, v, mask, causal=causal))\n",
           tests=BERT, k=BERT_K, why="BERT-family attention scores scaled x1.5"),
    Mutant("bert-query-key-swapped", "isoform/architectures/bert.py",
           old="    def backbone_rules(self) -> list[Rule]:\n        return [*self.embedding_rules(),\n",
           new="    def backbone_rules(self) -> list[Rule]:\n"
               "        from ..weights import Rename, Transpose  # HF query -> graph key, HF key -> graph query\n"
               '        attn = "encoder.layer.{i}.attention.self"\n'
               '        swapped = [Rename(f"{attn}.{a}.{p}", f"{attn}.{b}.{p}", Transpose() if p == "weight" else None)\n'
               '                   for a, b in (("query", "key"), ("key", "query")) for p in ("weight", "bias")]\n'
               "        return [*swapped, *self.embedding_rules(),\n",
           tests=BERT, k=BERT_K, why="BERT weight map swaps query and key"),
    Mutant("rope-theta-ignored", "isoform/layers/rotary.py",
           old='        return float(self.params.get("rope_theta", 10000.0))\n',
           new="        return 10000.0\n",
           tests=DECODERS, k=LLAMA_K, why="RoPE always uses base 10000"),
    # -- further refactor slips ----------------------------------------------------------------
    Mutant("causal-mask-dropped", "isoform/layers/causal.py",
           old="            visible = fn.le(key, slot)\n",
           new="            visible = fn.le(key, key)  # every key visible\n",
           tests=DECODERS, k="test_parity and (numpy or torch)", why="decoder-only attention not causal"),
    Mutant("rotary-keys-only", "isoform/architectures/llama.py",
           old="        q, k = apply_rotary(q, *rotary), apply_rotary(k, *rotary)\n",
           new="        k = apply_rotary(k, *rotary)\n",
           tests=DECODERS, k=LLAMA_K, why="Llama rotates keys but not queries"),
    Mutant("kv-cache-write-off-by-one", "isoform/layers/causal.py",
           old="fn.dynamic_update_slice(cache, x, zero, zero, self.offset, zero)\n",
           new="fn.dynamic_update_slice(cache, x, zero, zero, self.offset + 1, zero)\n",
           tests=DECODERS, k="cached_decode and (numpy or torch)",
           why="the KV cache is written one slot after cache_position"),
    Mutant("beam-reorder-skipped", "isoform/generation/search.py",
           old="        search.decoder.reorder(running_index[:, :, cur - 1 - prompt_len].reshape(-1))\n",
           new="        pass  # beams continue on the caches of the rows they came from\n",
           tests=("tests/test_generate.py",), k="parity_with_transformers and (numpy or torch)",
           why="beam search never reorders the decoder cache"),
    Mutant("repetition-penalty-inverted", "isoform/generation/processors.py",
           old="np.where(picked < 0, picked * penalty, picked / penalty)",
           new="np.where(picked < 0, picked / penalty, picked * penalty)",
           tests=("tests/test_generate_processors.py",), k="repetition",
           why="the repetition penalty rewards repeats"),
    Mutant("encoder-padding-mask-ignored", "isoform/layers/attention.py",
           old="    keep = fn.ne(mask, mask.builder.constant(0, mask.dtype))\n",
           new="    keep = fn.ne(mask, mask.builder.constant(-1, mask.dtype))  # padding attended\n",
           tests=BERT, k=BERT_K, why="BERT-family attention attends to padding"),
    Mutant("t5-bucket-off-by-one", "isoform/layers/relative_position.py",
           old="    return out + np.where(rel < exact, rel, large)\n",
           new="    return out + np.where(rel < exact - 1, rel, large)\n",
           tests=SEQ2SEQ, k="relative_buckets or (test_parity and (numpy or torch) and t5)",
           why="T5 relative position: the last exact bucket merged into the log-spaced ones"),
    Mutant("gqa-heads-tiled", "isoform/ir/ops/composite.py",
           old="    k, v = np.repeat(k, groups, axis=1), np.repeat(v, groups, axis=1)\n",
           new="    k, v = np.tile(k, (1, groups, 1, 1)), np.tile(v, (1, groups, 1, 1))\n",
           tests=DECODERS, k="test_parity and numpy and (llama or mistral or qwen2)",
           why="reference attention pairs query head h with kv head h % kv_heads, not h // groups"),
    Mutant("pooler-tanh-dropped", "isoform/layers/pooling.py",
           old="    return fn.tanh(linear(first_token(x), name, dim, dim))\n",
           new="    return linear(first_token(x), name, dim, dim)\n",
           tests=BERT, k=BERT_K, why="BERT pooler without its tanh"),
    Mutant("layernorm-eps-ignored", "isoform/layers/norm.py",
           old='g.param(f"{name}.bias", [dim]), eps=eps)\n',
           new='g.param(f"{name}.bias", [dim]), eps=1e-5)\n',
           tests=BERT, k=BERT_K, why="layer_norm_eps (1e-12 for BERT) replaced by nn.LayerNorm's default"),
    Mutant("onnx-gelu-tanh", "isoform/backends/onnx_ops.py",
           old='lower("gelu")(lambda ctx, x, *, approximate: ctx.op("Gelu", x, approximate=approximate))\n',
           new='lower("gelu")(lambda ctx, x, *, approximate: ctx.op("Gelu", x, approximate="tanh"))\n',
           tests=("tests/test_conformance.py",), k="onnxruntime and gelu",
           why="ONNX export lowers exact GELU to the tanh approximation"),
]


@dataclass
class Outcome:
    name: str  # mutant name, or "baseline"
    file: str
    selection: str
    result: str  # caught | survived | error | stale | timeout; baseline runs: passed | failed
    seconds: float
    detail: str  # pytest's last summary line, or why it errored

    def row(self) -> tuple[str, ...]:
        return self.name, self.file, self.selection, self.result, f"{self.seconds:.0f}"


class StaleMutant(Exception):
    pass


def why_stale(mutant: Mutant, root: Path) -> str | None:
    """None if ``mutant.old`` occurs exactly once in its file under ``root``, else why not."""
    path = root / mutant.path
    if not path.is_file():
        return f"{mutant.name}: {mutant.path} does not exist"
    count = path.read_text(encoding="utf-8").count(mutant.old)
    if count != 1:
        return f"{mutant.name}: the snippet occurs {count} times in {mutant.path} (expected once):\n    {mutant.old!r}"
    return None


def plant(mutant: Mutant, root: Path) -> None:
    """Apply ``mutant`` to its file under ``root``; `StaleMutant` unless ``old`` occurs exactly once."""
    problem = why_stale(mutant, root)
    if problem:
        raise StaleMutant(problem)
    path = root / mutant.path
    path.write_text(path.read_text(encoding="utf-8").replace(mutant.old, mutant.new), encoding="utf-8")


def repo_files(root: Path) -> list[str]:
    out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=root, check=True,
                         capture_output=True).stdout
    return [name for name in out.decode().split("\0") if name]


def snapshot(root: Path) -> Path:
    """A temporary directory (not a git worktree) holding the tracked and untracked-not-ignored files
    of ``root``. Taken once per run, so the baseline and every mutant test the same tree even while
    others keep editing ``root``."""
    dest = Path(tempfile.mkdtemp(prefix="isoform-mutants-snapshot-"))
    for name in repo_files(root):
        src = root / name
        if not src.exists() and not src.is_symlink():  # tracked but deleted in the working tree
            continue
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest / name, follow_symlinks=False)
    return dest


def copy_of(tree: Path, prefix: str) -> Path:
    """A fresh temporary copy of ``tree`` (a `snapshot`)."""
    dest = Path(tempfile.mkdtemp(prefix=f"isoform-mutant-{prefix}-"))
    shutil.copytree(tree, dest, symlinks=True, dirs_exist_ok=True)
    return dest


def environment(copy: Path) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(copy), PYTHONDONTWRITEBYTECODE="1")
    env.pop("PYTEST_ADDOPTS", None)
    return env


def check_import(copy: Path) -> str | None:
    """None if ``import isoform`` in ``copy`` (with its environment) finds the copy's package, not the
    editable install, else the reason. Only locates the package: a mutant that breaks the import
    itself is left to pytest to report."""
    probe = "import importlib.util as u; s = u.find_spec('isoform'); print(s.origin if s else None)"
    out = subprocess.run([sys.executable, "-c", probe], cwd=copy, env=environment(copy), capture_output=True,
                         text=True)
    origin = out.stdout.strip()
    if out.returncode or not Path(origin).resolve().is_relative_to(copy.resolve()):
        return f"isoform resolves to {origin or out.stderr.strip()!r}, not to the copy {copy}"
    return None


def run_pytest(copy: Path, selection: Sequence[str], timeout: float) -> tuple[int | None, float, str]:
    """(pytest exit code or None on timeout, seconds, last summary line)."""
    start = time.monotonic()
    try:
        out = subprocess.run([sys.executable, *PYTEST, *selection], cwd=copy, env=environment(copy),
                             capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, time.monotonic() - start, f"no result after {timeout:.0f} s"
    lines = [line.strip("= ") for line in (out.stdout + out.stderr).splitlines() if line.strip()]
    summary = next((line for line in reversed(lines) if SUMMARY.search(line)), lines[-1] if lines else "")
    first = next((line for line in lines if line.startswith(("FAILED ", "ERROR "))), None)
    return out.returncode, time.monotonic() - start, summary + (f"; {first}" if first else "")


def run_one(mutant: Mutant | None, selection: tuple[str, ...], tree: Path, timeout: float, keep: bool) -> Outcome:
    """Copy ``tree``, plant ``mutant`` there (None: the baseline), run ``selection`` on the copy."""
    name, file = (mutant.name, mutant.path) if mutant else ("baseline", "-")
    copy = copy_of(tree, name)
    try:
        try:
            if mutant:
                plant(mutant, copy)
        except StaleMutant as e:
            return Outcome(name, file, shlex.join(selection), "stale", 0.0, str(e))
        problem = check_import(copy)
        if problem:
            return Outcome(name, file, shlex.join(selection), "error" if mutant else "failed", 0.0, problem)
        code, seconds, summary = run_pytest(copy, selection, timeout)
        if code is None:
            result = "timeout"
        elif mutant is None:
            result = "passed" if code == 0 else "failed"
        else:
            result = {0: "survived", 1: "caught"}.get(code, "error")
        return Outcome(name, file, shlex.join(selection), result, seconds, f"exit {code}: {summary}" + (
            f" [kept {copy}]" if keep else ""))
    finally:
        if not keep:
            shutil.rmtree(copy, ignore_errors=True)


def run_all(jobs: list[tuple[Mutant | None, tuple[str, ...]]], tree: Path, workers: int, timeout: float,
            keep: bool, label: str) -> list[Outcome]:
    outcomes: list[Outcome] = []
    with ThreadPoolExecutor(max_workers=workers) as pool, tqdm(total=len(jobs), desc=label, unit="run") as bar:
        futures = [pool.submit(run_one, m, sel, tree, timeout, keep) for m, sel in jobs]
        for future in futures:
            outcome = future.result()
            outcomes.append(outcome)
            bar.write(f"{outcome.name}: {outcome.result} ({outcome.seconds:.0f} s) {outcome.detail}")
            bar.update()
    return outcomes


def table(outcomes: Sequence[Outcome]) -> str:
    rows = [("mutant", "file", "selection", "result", "seconds"), *(o.row() for o in outcomes)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.mutants", description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", action="append", metavar="NAME", default=[],
                        help="run only this mutant (repeatable)")
    parser.add_argument("--list", action="store_true", help="list the mutants and check their snippets; run nothing")
    parser.add_argument("--jobs", type=int, default=1, help="pytest runs in parallel (default 1)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per pytest run (default 600)")
    parser.add_argument("--no-baseline", action="store_true", help="skip the unmutated runs (when just done)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary copies (for debugging)")
    args = parser.parse_args(argv)

    by_name = {m.name: m for m in MUTANTS}
    unknown = [n for n in args.only if n not in by_name]
    if unknown:
        parser.error(f"unknown mutant(s) {unknown}; known: {', '.join(by_name)}")
    chosen = [by_name[n] for n in dict.fromkeys(args.only)] if args.only else list(MUTANTS)
    if args.list:
        problems = [p for p in (why_stale(m, ROOT) for m in chosen) if p]
        for m in chosen:
            state = "STALE" if why_stale(m, ROOT) else "ok"
            print(f"{m.name:36} {state:5}  {m.path:40} {shlex.join(m.selection)}")
        print("\n".join(problems), file=sys.stderr)
        return 2 if problems else 0

    tree = snapshot(ROOT)
    try:
        return run(chosen, tree, args)
    finally:
        if not args.keep:
            shutil.rmtree(tree, ignore_errors=True)


def run(chosen: Sequence[Mutant], tree: Path, args: argparse.Namespace) -> int:
    """Baseline, then the mutants, all on copies of ``tree``; prints and writes the table."""
    problems = [p for p in (why_stale(m, tree) for m in chosen) if p]
    if problems:
        print("stale mutants (fix their snippets first):\n" + "\n".join(problems), file=sys.stderr)
        return 2
    outcomes: list[Outcome] = []
    if not args.no_baseline:
        selections = list(dict.fromkeys(m.selection for m in chosen))
        outcomes = run_all([(None, s) for s in selections], tree, args.jobs, args.timeout, args.keep, "baseline")
        failed = [o for o in outcomes if o.result != "passed"]
        if failed:
            print(table(outcomes))
            print("\nthe baseline (no mutation) fails, so no mutant result would mean anything:", file=sys.stderr)
            for o in failed:
                print(f"  {o.selection}: {o.detail}", file=sys.stderr)
            write_results(outcomes)
            return 2
    results = run_all([(m, m.selection) for m in chosen], tree, args.jobs, args.timeout, args.keep, "mutants")
    outcomes += results
    print(table(outcomes))
    write_results(outcomes)
    counts = {r: sum(o.result == r for o in results) for r in ("caught", "survived", "error", "stale", "timeout")}
    print(", ".join(f"{n} {r}" for r, n in counts.items() if n), f"(results in {RESULTS.relative_to(ROOT)})")
    return 0 if counts["caught"] == len(results) else 1


def write_results(outcomes: Sequence[Outcome]) -> None:
    RESULTS.write_text(json.dumps([o.__dict__ for o in outcomes], indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
