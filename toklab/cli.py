"""The `toklab` command: parse options, call the Python API, render the result with rich.

No logic lives here beyond that. Any `ToklabError` (a user's mistake) becomes a one-line
message on stderr and exit code 2.
"""

import functools
import heapq
import inspect
import json
import sys
from typing import Annotated, Any, Callable, Optional

import typer
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from toklab._version import __version__
from toklab.errors import ToklabError
from toklab.tables import human_bytes, mb
from toklab.text import count
from toklab.gpt.train import EVAL_BYTES, VAL_BYTES

console = Console()
err_console = Console(stderr=True)

app = typer.Typer(
    name="toklab",
    help="toklab: a tokeniser and compression-analysis laboratory.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)
corpus_app = typer.Typer(help="Inspect, sample and build corpora.", no_args_is_help=True)
app.add_typer(corpus_app, name="corpus")


def _print_version(value: bool) -> None:
    if value:
        console.print(f"toklab {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True, metavar="", help="Print the toklab version and exit.")] = False,
) -> None:
    """toklab measures how densely segmenters (BPE, unigram, bytes, pretrained tokenisers, ...)
    represent text, against classic compressors, and what that buys in training FLOPs."""


# --- shared corpus options ----------------------------------------------------------------

PANEL = "Corpus"
CORPUS_PARAMETERS = [
    ("corpus", str, "default", typer.Option("--corpus", "-c", rich_help_panel=PANEL, help="What to read: a shard file (.parquet, .jsonl, .jsonl.gz, .jsonl.zst, .txt), a folder or glob of shards, a folder written by datasets' save_to_disk, a hub dataset id (org/name, or hf:ID), or a recipe name from corpora/ (e.g. default, the embedded corpus).")),
    ("text_field", str, "text", typer.Option("--text-field", rich_help_panel=PANEL, help="Field or column that holds the text.")),
    ("id_field", Optional[str], None, typer.Option("--id-field", rich_help_panel=PANEL, help="Field that holds a stable document id. Default: 'id' when present, else the document's file and row.")),
    ("source_field", str, "source", typer.Option("--source-field", rich_help_panel=PANEL, help="Field naming the kind of text (used for per-source tables). Default source: the sub-folder or file name.")),
    ("lines", bool, False, typer.Option("--lines", rich_help_panel=PANEL, metavar="", help=".txt inputs: one document per line instead of one per file.")),
    ("name", Optional[str], None, typer.Option("--name", rich_help_panel=PANEL, help="Hugging Face dataset config name (hub ids).")),
    ("split", Optional[str], None, typer.Option("--split", rich_help_panel=PANEL, help="Hugging Face dataset split to read (hub ids and saved DatasetDicts). Default: train.")),
    ("max_docs", Optional[int], None, typer.Option("--max-docs", rich_help_panel=PANEL, help="Stop after this many documents.")),
    ("max_bytes", Optional[int], None, typer.Option("--max-bytes", rich_help_panel=PANEL, help="Stop before the document that would take the total past this many UTF-8 bytes.")),
    ("sample", float, 1.0, typer.Option("--sample", rich_help_panel=PANEL, help="Keep this fraction of documents, chosen by a hash of (seed, id): deterministic and streaming.")),
    ("seed", int, 0, typer.Option("--seed", rich_help_panel=PANEL, help="Seed for --sample.")),
    ("val_fraction", float, 0.1, typer.Option("--val-fraction", rich_help_panel=PANEL, help="Share of documents in the validation split, chosen by a hash of the document id alone.")),
    ("strict", bool, False, typer.Option("--strict", rich_help_panel=PANEL, metavar="", help="Make malformed JSON lines an error instead of skipping and counting them.")),
]


OUTPUT_PARAMETERS: list[tuple[str, Any, Any, Any]] = [
    ("quiet", bool, False, typer.Option("--quiet", "-q", rich_help_panel="Output", metavar="", help="No progress display or progress lines; results and errors only.")),
    ("verbose", bool, False, typer.Option("--verbose", rich_help_panel="Output", metavar="", help="Plain progress lines every second (also on a terminal), for logs. Without a terminal a line comes every 5 seconds anyway.")),
]


def corpus_command(func: Callable[..., Any] | None = None, *, lazy: bool = False) -> Any:
    """Give a command every shared corpus option; it receives an opened `corpus` argument.

    With `lazy=True` it receives a zero-argument function that opens the corpus instead, for
    commands that need a corpus only sometimes (and should not build the default one otherwise).
    """
    if func is None:
        return functools.partial(corpus_command, lazy=lazy)

    own = [p for p in inspect.signature(func).parameters.values() if p.name != "corpus"]
    shared = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=Annotated[kind, option])
        for name, kind, default, option in CORPUS_PARAMETERS + OUTPUT_PARAMETERS
    ]

    @functools.wraps(func)
    def wrapper(**kwargs: Any) -> Any:
        from toklab.corpus import CorpusOptions, open_corpus  # here, not at start-up: --help needs neither
        from toklab.progress import set_verbosity

        quiet, verbose = kwargs.pop("quiet"), kwargs.pop("verbose")
        if quiet and verbose:
            raise ToklabError("give --quiet or --verbose, not both")
        set_verbosity("quiet" if quiet else "verbose" if verbose else "normal")
        values = {name: kwargs.pop(name) for name, *_ in CORPUS_PARAMETERS}
        spec = values.pop("corpus")
        options = CorpusOptions(**values)
        opener = functools.partial(open_corpus, spec, options, progress=True)
        return func(corpus=opener if lazy else opener(), **kwargs)

    wrapper.__signature__ = inspect.Signature(own + shared)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in own + shared}
    del wrapper.__wrapped__  # typer must read the new signature, not the original one
    return wrapper


# --- rendering ------------------------------------------------------------------------------


def _print_notes(notes: list[str]) -> None:
    for note in notes:
        err_console.print(Text.assemble(("note: ", "yellow"), note), soft_wrap=True)


def _per_source_table(per_source: Any, top: int) -> Table:
    """Sources largest first; past `top` rows the rest are summed into one row."""
    from toklab.tables import digits, figure_column, mb, pct, table as make_table, text_column, thousands

    rows = per_source.sort_values("bytes", ascending=False, kind="stable")
    shown, rest = (rows, rows.iloc[0:0]) if top == 0 else (rows.iloc[:top], rows.iloc[top:])
    figures = [figure_column(c, no_wrap=True) for c in ("docs", "MB", "mean B", "max B", "val", "share")]
    table = make_table(f"per source ({len(rows)})", [text_column("source", overflow="ellipsis", no_wrap=True, max_width=28), *figures])

    def add(label: Text, docs: int, n_bytes: int, longest: int, val: int, share: float) -> None:
        table.add_row(label, thousands(docs), mb(n_bytes), digits(0)(n_bytes / max(docs, 1)), thousands(longest), thousands(val), pct(share))

    for row in shown.itertuples(index=False):
        add(Text(row.source), row.documents, row.bytes, row.max_bytes, row.val_documents, row.share_of_bytes)
    if len(rest):
        label = Text(f"({len(rest)} more: --top 0)", style="dim")
        add(label, int(rest["documents"].sum()), int(rest["bytes"].sum()), int(rest["max_bytes"].max()), int(rest["val_documents"].sum()), float(rest["share_of_bytes"].sum()))
    return table


def _note_if_lossy(segmenter: Any) -> None:
    if not segmenter.lossless:
        reasons = "; ".join(getattr(segmenter, "lossy_reasons", ())) or "decode(encode(text)) can differ from text"
        err_console.print(Text.assemble(("note: ", "yellow"), f"{segmenter.spec} is not lossless: {reasons}"))


# --- corpus commands ------------------------------------------------------------------------


@corpus_app.command("info")
@corpus_command
def corpus_info_command(
    corpus: Any,
    as_json: Annotated[bool, typer.Option("--json", metavar="", help="Print the figures as JSON instead of tables.")] = False,
    top: Annotated[int, typer.Option("--top", min=0, help="Show the N largest sources by bytes and fold the rest into one row (0: show all).")] = 25,
) -> None:
    """Count documents, bytes and characters, overall and per source, in one streaming pass."""
    from toklab.corpus import corpus_info

    from toklab.tables import mb

    info = corpus_info(corpus, progress=True)
    if as_json:
        print(json.dumps(info.to_dict(), indent=2, default=str))
        return
    summary = Table.grid(padding=(0, 2))
    summary.add_column(style="bold")
    summary.add_column()
    for label, value in [
        ("corpus", f"{info.spec}  ({info.description})"),
        ("documents", f"{info.documents:,}  (train {info.train_documents:,}, val {info.val_documents:,})"),
        ("bytes", f"{info.bytes:,}  ({mb(info.bytes, unit=True)})"),
        ("characters", f"{info.chars:,}"),
        ("mean length", f"{info.mean_bytes:,.0f} bytes"),
        ("max length", f"{info.max_bytes:,} bytes  ({info.max_doc_id})"),
    ]:
        summary.add_row(label, Text(value))
    console.print(summary)
    console.print(_per_source_table(info.per_source, top))
    _print_notes(info.stats.notes())


@corpus_app.command("sample")
@corpus_command
def corpus_sample_command(
    corpus: Any,
    count: Annotated[int, typer.Option("--count", "-n", min=1, help="How many documents to show.")] = 3,
    chars: Annotated[int, typer.Option("--chars", min=0, help="Show at most this many characters of each (0: all).")] = 600,
    part: Annotated[str, typer.Option("--part", help="Which split to draw from: all, train or val.")] = "all",
    pick_seed: Annotated[int, typer.Option("--pick-seed", help="Seed for which documents are shown.")] = 0,
) -> None:
    """Print a few documents, picked by a hash of their id so they spread over the whole corpus."""
    from toklab.corpus.document import unit_hash

    if part not in {"all", "train", "val"}:
        raise ToklabError(f"--part must be all, train or val, not '{part}'")
    # Keep the `count` documents with the smallest hash: a uniform pick in one pass and O(count) memory.
    heap: list[tuple[float, int, Any]] = []
    for i, doc in enumerate(corpus.documents(None if part == "all" else part)):
        key = -unit_hash(doc.id, f"show{pick_seed}")
        if len(heap) < count:
            heapq.heappush(heap, (key, i, doc))
        elif key > heap[0][0]:
            heapq.heapreplace(heap, (key, i, doc))
    docs = [doc for _, _, doc in sorted(heap, key=lambda item: item[1])]
    if not docs:
        raise ToklabError(f"no documents in {'the corpus' if part == 'all' else 'the ' + part + ' split'}")
    for doc in docs:
        text = doc.text if chars == 0 or len(doc.text) <= chars else doc.text[:chars] + " …"
        console.rule(Text(f"{doc.id}  ·  {doc.source}  ·  {doc.n_bytes:,} bytes"))
        console.print(Text(text))
    _print_notes(corpus.stats.notes())


@corpus_app.command("build")
def corpus_build_command(
    name: Annotated[str, typer.Argument(help="Recipe name in corpora/ (or a path to a recipe .toml).")] = "default",
    force: Annotated[bool, typer.Option("--force", metavar="", help="Rebuild even if the cached build is up to date.")] = False,
) -> None:
    """Build a corpus recipe into the user cache. Commands build what they need on first use anyway."""
    from toklab.corpus import build_corpus

    result = build_corpus(name, force=force, progress=True)
    state = "built" if result.rebuilt else "up to date"
    console.print(f"corpus '{result.name}' {state}: {count(result.documents, 'document')}, {mb(result.bytes, unit=True)} in {result.path}")
    table = Table(title="parts", title_justify="left")
    table.add_column("source")
    table.add_column("docs", justify="right")
    table.add_column("bytes", justify="right")
    for source, counts in result.per_part.items():
        table.add_row(source, f"{counts['documents']:,}", f"{counts['bytes']:,}")
    console.print(table)


@corpus_app.command("list")
def corpus_list_command() -> None:
    """List the named corpus recipes and whether each is built."""
    from toklab.corpus import find_recipe, load_recipe, recipe_names
    from toklab.corpus.recipes import read_manifest

    table = Table()
    table.add_column("recipe")
    table.add_column("built")
    table.add_column("description")
    for name in recipe_names():
        recipe = load_recipe(find_recipe(name))  # type: ignore[arg-type]
        manifest = read_manifest(recipe.cache_path()) if recipe.built_parts else None
        built = "in place" if not recipe.built_parts else (mb(manifest["bytes"], unit=True) if manifest else "no")
        table.add_row(name, built, recipe.description)
    console.print(table)


# --- compare and report -------------------------------------------------------------------------


def _print_compare(result: Any, top: int) -> None:
    from toklab.reports import fairness_tables, main_tables, per_source_table

    for table in main_tables(result):
        console.print(table)
    console.print(per_source_table(result, top, console.width))
    for table in fairness_tables(result):  # parallel text only
        console.print(table)
    _print_notes(result.notes)


JSON_OPTION = typer.Option("--json", metavar="", help="Print the result as JSON on stdout instead of tables (progress and notes still go to stderr).")


def _print_json(data: Any) -> None:
    """Plain JSON on stdout, nothing else: for scripts (`| jq`)."""
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")


def _replaced(folder: Any, what: str, option: str = "--out") -> None:
    _print_notes([f"this run replaced the earlier {what} in {folder} (give {option} to keep each run's report apart)"])


@app.command("compare")
@corpus_command
def compare_command(
    corpus: Any,
    segmenters: Annotated[Optional[list[str]], typer.Option("--segmenters", "--segmenter", "-s", help="Comma-separated segmenter specs (repeatable), e.g. 'bytes,bpe:32k,regex=o200k,tiktoken:cl100k_base'. Default: bytes, bpe:32k, unigram:32k, entropy:target=4.5, zstd-dict:32k and every tiktoken encoding available offline (gpt2, p50k_base, cl100k_base, o200k_base).")] = None,
    out: Annotated[Optional[str], typer.Option("--out", "-o", help="Report folder. Default: reports/compare-<corpus>, followed by the segmenters when they are not the default ones and the threshold when it is not 0.3.")] = None,
    no_compressors: Annotated[bool, typer.Option("--no-compressors", metavar="", help="Skip the zstd and 7z rows.")] = False,
    threshold: Annotated[float, typer.Option("--threshold", "-t", help="Cramming threshold t for the keep-rate columns: keep iff tokens <= t x chars.")] = 0.3,
    top: Annotated[int, typer.Option("--top", min=1, help="Sources shown in the terminal's per-source table (all are in per_source.csv).")] = 6,
    parallel: Annotated[Optional[bool], typer.Option("--parallel/--no-parallel", help="Add fairness across languages (parity against --reference, Gini, worst languages and scripts) over every document with a language (a 'language' field or an id such as ru_Cyrl), both splits. Default: on when every validation document has a language.")] = None,
    reference: Annotated[Optional[str], typer.Option("--reference", help="The language parity is measured against: a language key (en_Latn) or a language with one key in the corpus (ru); implies --parallel. Default: en (en_Latn).")] = None,
    as_json: Annotated[bool, JSON_OPTION] = False,
) -> None:
    """Compression tables: every segmenter and classic compressors on the same held-out bytes.

    Trainable segmenters train on the train split (cached); every figure is measured on the validation split. Writes results.json, table.csv, table.md, per_source.csv and plots; on parallel text also parity.csv, parity_by_script.csv and its plot."""
    from toklab.comparison import default_out, run_compare
    from toklab.reports import holds_report, to_json, write_report
    from toklab.segmenters.registry import split_specs

    specs = split_specs(segmenters) if segmenters else None
    report = out or default_out(corpus, specs, threshold)
    replaced = holds_report(report)
    if reference is not None and parallel is None:
        parallel = True  # naming a reference asks for the fairness section
    result = run_compare(
        corpus, specs, compressors=not no_compressors, threshold=threshold, progress=True, out=report, parallel=parallel, reference=reference or "en"
    )  # checks --out first
    target = write_report(result, report)
    if as_json:
        _print_json({**to_json(result), "report": str(target)})
    else:
        _print_compare(result, top)
        console.print(f"report: {target}")
    if replaced:
        _replaced(target, "compare report")


@app.command("audit")
@corpus_command
def audit_command(
    corpus: Any,
    spec: Annotated[str, typer.Argument(help="Segmenter spec, e.g. bytes, bpe:32k, tiktoken:gpt2, spm:m.model, or a saved segmenter folder; trainable kinds train on --corpus (or come from the cache).")],
    docs: Annotated[int, typer.Option("--docs", min=1, help="Audit the first N non-empty documents of --part.")] = 1000,
    part: Annotated[str, typer.Option("--part", help="Which split of the corpus to audit: val, train or all.")] = "val",
    out: Annotated[Optional[str], typer.Option("--out", "-o", help="Folder for audit.json. Default: reports/audit-<corpus>-<segmenter>, then --part and --docs when not the defaults.")] = None,
    as_json: Annotated[bool, JSON_OPTION] = False,
) -> None:
    """Certify a segmenter's byte accounting, on which bits-per-byte rests: exit 0 when it passes, 1 when it fails.

    Checks that every id's byte length is the length of its bytes (specials 0), that each document's
    tokens add up to its UTF-8 bytes and spell them, that byte spans tile it, and that
    decode(encode(text)) == text; reports partial-character tokens, byte-fallback pieces, the
    leading-space convention and the normaliser. Writes audit.json."""
    from toklab.audit import audit, corpus_documents, default_out, write_audit
    from toklab.segmenters import get_segmenter

    from toklab.segmenters.registry import check_spec

    check_spec(spec)  # a bad spec, then a bad --part, are refused before anything is read or trained
    target = out or default_out(corpus, spec, part, docs)
    documents = corpus_documents(corpus, part, docs)
    segmenter = get_segmenter(spec, corpus, progress=True)
    result = audit(segmenter, documents)
    meta = {"corpus": corpus.spec, "part": part, "docs_requested": docs}
    written = write_audit(result, target, corpus.input_roots(), meta)
    if as_json:
        _print_json({**meta, **result.to_json(), "report": str(written)})
    else:
        _print_audit(result, corpus.spec, part)
        console.print(f"report: {written / 'audit.json'}", highlight=False)
    if not result.passed:
        raise typer.Exit(1)


def _print_audit(result: Any, corpus_spec: str, part: str) -> None:
    from toklab.tables import table as make_table, text_column, thousands

    title = f"byte-accounting audit: {result.segmenter} ({result.vocab_size:,} ids) on {count(result.documents, part + ' document')} of {corpus_spec} ({result.bytes:,} bytes, {result.tokens:,} tokens)"
    checks = make_table(title, [text_column("check", no_wrap=True), text_column("result"), "failures", "checked", text_column("meaning")])
    for check in result.checks:
        verdict = Text("pass", style="green") if check.passed else Text("FAIL", style="bold red")
        checks.add_row(check.name.replace("_", " "), verdict, thousands(check.failures), thousands(check.checked), check.meaning)
    console.print(checks)
    found = make_table("findings (these do not fail the audit)", [text_column("finding", no_wrap=True), "ids", "uses", text_column("what")])
    partial, fallback, space, norm = result.partial_characters, result.byte_fallback, result.leading_space, result.normaliser
    found.add_row("partial characters", thousands(partial["ids"]), thousands(partial["uses"]), ", ".join(f"{e['id']}: {e['bytes']}" for e in partial["examples"]))
    found.add_row("byte fallback", thousands(fallback["ids"]), thousands(fallback["uses"]), ", ".join(f"{e['id']}: {e['string']}" for e in fallback["examples"]))
    found.add_row("leading space", thousands(space["space_prefixed_ids"]), "", space["convention"] + ("; encode adds one before the text" if space["adds_prefix_space"] else ""))
    found.add_row("normaliser", "", "", (norm["name"] or "none declared") + (", declared lossless" if norm["declared_lossless"] else ", declared lossy: " + ("; ".join(norm["reasons"]) or "decode(encode(text)) can differ")))
    console.print(found)
    for check in result.checks:
        for example in check.examples:
            err_console.print(Text.assemble((f"{check.name.replace('_', ' ')}: ", "red"), json.dumps(example, ensure_ascii=False)), soft_wrap=True)
    _print_notes(result.warnings)
    if result.passed:
        console.print(Text.assemble(("PASS", "bold green"), f": {result.segmenter}'s bits-per-byte counts each byte of the text once"))
    else:
        console.print(Text.assemble(("FAIL", "bold red"), f": {result.failed()}: bits-per-byte computed from {result.segmenter}'s ids would be wrong"))


@app.command("report")
def report_command(
    directory: Annotated[str, typer.Argument(help="A folder written by toklab compare, filter, pretrain or study.")],
    top: Annotated[int, typer.Option("--top", min=1, help="Sources shown in the per-source table.")] = 6,
    rewrite: Annotated[bool, typer.Option("--rewrite", metavar="", help="Also regenerate the report's csv, md and png files from its saved results (compare, pretrain and study folders).")] = False,
    as_json: Annotated[bool, JSON_OPTION] = False,
    as_html: Annotated[bool, typer.Option("--html", metavar="", help="Also write DIR/report.html: one self-contained page with the tables, plots and notes (and, for a compare folder, a few validation documents cut by its segmenters when the corpus and trained segmenters are at hand).")] = False,
    docs: Annotated[int, typer.Option("--docs", min=0, help="With --html: validation documents shown in a compare folder's page (0: none).")] = 3,
) -> None:
    """Show a saved compare, filter, pretrain or study folder again, without recomputing anything."""
    from pathlib import Path

    folder = Path(directory)
    if not folder.is_dir():
        raise ToklabError(f"{folder} is not a folder" if folder.exists() else f"{folder} does not exist")
    from toklab.outputs import folder_kind

    kind = folder_kind(folder)
    if kind == "compare":
        from toklab.reports import read_report, to_json, write_report

        result = read_report(folder)
        if rewrite:
            write_report(result, folder)
        if as_json:
            _print_json(to_json(result))
        else:
            _print_compare(result, top)
    elif kind == "filter":
        from toklab.filter.report import read_filter_report, summary

        if rewrite:
            raise ToklabError("--rewrite is for compare, pretrain and study folders; a filter report is rewritten by running the filter again")
        filtered = read_filter_report(folder)
        if as_json:
            _print_json(summary(filtered))
        else:
            _print_filter(filtered, top)
    elif kind == "pretrain":
        from toklab.pretrain import read_run, read_run_file, write_run_report

        run = read_run(folder)
        if rewrite:
            write_run_report(run)
        if as_json:
            _print_json(_run_json(run))
        else:
            _print_run(run, str((read_run_file(folder) or {}).get("corpus", "?")))
    elif kind == "study":
        from toklab.study import read_study, to_json as study_json, write_study_report

        study = read_study(folder)
        if rewrite:
            write_study_report(study)
        if as_json:
            _print_json(study_json(study))
        else:
            _print_study(study)
    else:
        raise ToklabError(f"{folder} holds no toklab report (no results.json, summary.json, run.json or study.json)")
    if rewrite and not as_json:
        console.print(f"rewrote {folder}")
    if as_html:  # after --rewrite, so the page holds the plots just written
        from toklab.html_report import write_html_report

        err_console.print(f"page: {write_html_report(folder, docs=docs)}", highlight=False)


@app.command("view")
@corpus_command(lazy=True)
def view_command(
    corpus: Any,
    segmenters: Annotated[Optional[list[str]], typer.Option("--segmenters", "--segmenter", "-s", help="Comma-separated segmenter specs (repeatable), one panel each, e.g. 'bytes,bpe:32k,tiktoken:o200k_base,entropy:target=4.5'. Default: bytes,tiktoken:o200k_base. Trainable kinds are trained on --corpus (or taken from the cache).")] = None,
    text: Annotated[Optional[str], typer.Option("--text", help="The text to show.")] = None,
    file: Annotated[Optional[str], typer.Option("--file", "-f", help="Show this file's text instead (UTF-8).")] = None,
    docs: Annotated[Optional[int], typer.Option("--docs", min=1, help="Show the first N documents of --corpus's validation split instead.")] = None,
    out: Annotated[str, typer.Option("--out", "-o", metavar="FILE", help="The HTML file to write.")] = "view.html",
    max_chars: Annotated[int, typer.Option("--max-chars", min=1, help="Show at most this many characters of each text (the page says when it cut one).")] = 20_000,
) -> None:
    """Write one self-contained HTML page showing the same text cut by each segmenter, side by side.

    Tokens alternate in colour; spaces show as ·, newlines as ↵, tabs as →; tokens that split a UTF-8 character and byte-fallback patches are marked; hovering a token shows its id, bytes and byte span. Entropy segmenters also show the per-byte entropy with the threshold and patch starts. The page needs no network."""
    from pathlib import Path

    from toklab.segmenters import get_segmenters
    from toklab.segmenters.registry import check_specs, split_specs
    from toklab.view import view_corpus, view_data, write_view

    given = [name for name, value in (("--text", text), ("--file", file), ("--docs", docs)) if value is not None]
    if len(given) != 1:
        raise ToklabError(f"give exactly one of --text, --file or --docs N (documents of --corpus){'; got ' + ' and '.join(given) if given else ''}")
    specs = split_specs(segmenters) if segmenters else ["bytes", "tiktoken:o200k_base"]
    checked = check_specs(specs)
    if file is not None:
        try:
            text = Path(file).read_bytes().decode("utf-8", errors="replace")
        except OSError as exc:
            raise ToklabError(f"cannot read {file}: {exc.strerror}") from None
    opened = corpus() if docs is not None or any(c.trainable for c in checked) else None
    loaded, notes = get_segmenters(specs, opened, progress=True)
    if docs is not None:
        views = view_corpus(opened, loaded, docs, max_chars=max_chars)
    else:
        assert text is not None
        views = [view_data(text, loaded, label=Path(file).name if file else "", max_chars=max_chars)]
    target = write_view(out, views, notes=notes)
    _print_notes(notes)
    console.print(f"{len(views)} text{'s' if len(views) != 1 else ''}, {len(loaded)} segmenter{'s' if len(loaded) != 1 else ''}: {target}", highlight=False)


# --- filter -------------------------------------------------------------------------------------


def _floats(text: str, option: str) -> list[float]:
    import math

    try:
        values = [float(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        raise ToklabError(f"{option} takes comma-separated numbers, e.g. 0.2,0.25,0.3; got '{text}'") from None
    if not values:
        raise ToklabError(f"{option} needs at least one value")
    bad = [v for v in values if not math.isfinite(v)]
    if bad:
        raise ToklabError(f"{option} takes finite numbers, got {bad[0]}")
    return values


@app.command("filter")
@corpus_command(lazy=True)
def filter_command(
    corpus: Any,
    t: Annotated[Optional[float], typer.Option("--t", "--threshold", "-t", help="Threshold: keep a document iff tokens <= t x chars (--by tokens; default 0.3, Cramming's) or zstd bytes <= t x raw bytes (--by zstd; default 0.5).")] = None,
    out: Annotated[Optional[str], typer.Option("--out", "-o", help="Folder for the kept shards: the input's shard layout and format (parquet stays parquet; jsonl and txt become .jsonl.zst), every field kept, plus a ratio column.")] = None,
    segmenter: Annotated[Optional[str], typer.Option("--segmenter", "--segmenters", "-s", help="Segmenter spec that counts tokens. Default: bpe:32k trained on a sample of the input (Cramming's 'self' tokeniser), cached.")] = None,
    by: Annotated[str, typer.Option("--by", help="What is measured: tokens (tokens per char) or zstd (compressed bytes per raw byte, no segmenter).")] = "tokens",
    keep_rejected: Annotated[bool, typer.Option("--keep-rejected", metavar="", help="Also write rejected and empty documents, with a reject_reason column, to <out>-rejected beside --out.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", metavar="", help="Measure and report only; write no shards.")] = False,
    sweep: Annotated[Optional[str], typer.Option("--sweep", help="Comma-separated thresholds, e.g. 0.2,0.25,0.3,0.35: print their keep rates (overall and for the worst source); writes no shards.")] = None,
    resume: Annotated[bool, typer.Option("--resume", metavar="", help="Continue an interrupted run in --out from its last completed shard (the same arguments are required).")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", metavar="", help="Replace an earlier filter run's output in --out. Folders holding anything else are never touched.")] = False,
    report: Annotated[Optional[str], typer.Option("--report", help="Report folder. Default: reports/filter-<--out's name> when shards are written; for --dry-run and --sweep, reports/filter-<corpus>-<segmenter>-t<t>-dry-run or -sweep-<thresholds>.")] = None,
    workers: Annotated[Optional[int], typer.Option("--workers", min=1, help="Processes (several shards) or threads (one shard). Default: every core.")] = None,
    train_bytes: Annotated[int, typer.Option("--train-bytes", min=1, help="Bytes of the input, sampled from every shard, that a trainable --segmenter trains on.")] = 20_000_000,
    top: Annotated[int, typer.Option("--top", min=1, help="Sources shown in the terminal's per-source table (all are in per_source.csv).")] = 10,
    executor: Annotated[str, typer.Option("--executor", help="Who filters the shards: pool (this machine's processes, the default) or a datatrove executor: local, slurm or ray (pip install \"toklab[datatrove]\"; logs and completion markers in <out>/.datatrove).")] = "pool",
    tasks: Annotated[int, typer.Option("--tasks", min=1, help="--executor: datatrove tasks (input shards are dealt out by index); --workers is then the tasks run at once (local default: one per core).")] = 1,
    partition: Annotated[Optional[str], typer.Option("--partition", help="--executor slurm: the partition.")] = None,
    time_limit: Annotated[Optional[str], typer.Option("--time", help="--executor slurm: each task's time limit, e.g. 4:00:00.")] = None,
    ray_address: Annotated[Optional[str], typer.Option("--ray-address", help="--executor ray: the Ray cluster to join (default: a running or new local instance).")] = None,
    as_json: Annotated[bool, JSON_OPTION] = False,
) -> None:
    """Cramming-style compressibility filter: drop every document with tokens > t x chars.

    Kept documents go to --out shard by shard (resumable: an interrupted run continues with --resume, and ends byte-identical to an uninterrupted one). The run checks that kept + rejected + empty = documents read. A report (per-source keep rates, a ratio histogram with the threshold, rejected examples) goes under reports/."""
    from pathlib import Path

    from toklab.filter import filter_corpus, rejected_folder
    from toklab.filter.report import check_report_folder, default_report, holds_report, summary, write_filter_report

    thresholds = _floats(sweep, "--sweep") if sweep is not None else None
    if out is None and not dry_run and thresholds is None:
        raise ToklabError("--out is required (or pass --dry-run or --sweep to only measure)")
    opened = corpus()
    writes = out is not None and not (dry_run or thresholds)
    report_path = Path(report) if report else default_report(opened.label, out if writes else None, by=by, threshold=t, segmenter=segmenter, sweep=thresholds)
    check_report_folder(report_path, opened.input_roots(), Path(out) if writes else None, rejected_folder(out) if writes and keep_rejected else None)  # before the long run
    replaced = holds_report(report_path)
    if executor not in ("pool", "local", "slurm", "ray"):
        raise ToklabError(f"--executor must be pool, local, slurm or ray, got '{executor}'")
    if executor != "pool":
        try:
            from toklab.datatrove import filter_on_datatrove
        except ImportError:
            raise ToklabError('--executor needs datatrove: pip install "toklab[datatrove]"') from None
        result = filter_on_datatrove(
            opened, out, executor=executor, tasks=tasks, workers=workers or -1, partition=partition, time=time_limit, ray_address=ray_address,
            threshold=t, by=by, segmenter=segmenter, keep_rejected=keep_rejected, dry_run=dry_run, sweep=thresholds,
            resume=resume, overwrite=overwrite, train_bytes=train_bytes, progress=True,
        )  # fmt: skip
    else:
        result = filter_corpus(
            opened, out, threshold=t, by=by, segmenter=segmenter, keep_rejected=keep_rejected, dry_run=dry_run, sweep=thresholds,
            resume=resume, overwrite=overwrite, workers=workers, train_bytes=train_bytes, progress=True,
        )  # fmt: skip
    target = write_filter_report(result, report_path)
    if as_json:
        _print_json({**summary(result), "report": str(target)})
    else:
        _print_filter(result, top)
        console.print(f"report: {target}")
    if replaced:
        _replaced(target, "filter report", "--report")
    if not result.conserved:
        raise typer.Exit(1)


def _print_filter(result: Any, top: int) -> None:
    from toklab.filter.report import terminal_tables

    for table in terminal_tables(result, top):
        console.print(table)
    _print_notes(result.notes)
    if result.resumed_shards:
        console.print(f"resumed: {result.resumed_shards} of {len(result.shards)} shards were already done")
    if result.out is not None:
        console.print(f"kept shards: {result.out}" + (f"; rejected: {result.rejected_out}" if result.rejected_out else ""))
    console.print(result.count_check, style=None if result.conserved else "bold red")


# --- pretrain and sample ---------------------------------------------------------------------------

TRAIN_PANEL = "Training"


@app.command("pretrain")
@corpus_command
def pretrain_command(
    corpus: Any,
    segmenter: Annotated[str, typer.Option("--segmenter", "--segmenters", "-s", help="Segmenter spec, e.g. bytes, bpe:32k, tiktoken:gpt2, or a saved segmenter folder.")] = "bytes",
    model: Annotated[str, typer.Option("--model", "-m", help="Model preset: tiny, small, medium or gpt2-124m (--arch blt: tiny, small or gpu).")] = "tiny",
    arch: Annotated[str, typer.Option("--arch", help="gpt (a GPT over the segmenter's tokens) or blt (a byte-latent patch model: -s is then a patcher, e.g. static:size=4.5, space, entropy:target=4.5 or bpe:4k for its token boundaries).")] = "gpt",
    n_layer: Annotated[Optional[int], typer.Option("--n-layer", min=1, help="Layers (overrides the preset).")] = None,
    n_head: Annotated[Optional[int], typer.Option("--n-head", min=1, help="Attention heads (overrides the preset).")] = None,
    d_model: Annotated[Optional[int], typer.Option("--d-model", min=1, help="Width (overrides the preset).")] = None,
    context: Annotated[int, typer.Option("--context", min=2, help="Context length in tokens.")] = 256,
    context_bytes: Annotated[Optional[int], typer.Option("--context-bytes", min=2, help="Context in bytes instead: the whole number of tokens nearest to N bytes at this segmenter's bytes/token on the training split.")] = None,
    flops: Annotated[Optional[float], typer.Option("--flops", help="Budget: training FLOPs (6N + 12LTd per token). The budget that makes segmenters comparable.")] = None,
    tokens: Annotated[Optional[float], typer.Option("--tokens", help="Budget: training tokens.")] = None,
    steps: Annotated[Optional[int], typer.Option("--steps", help="Budget: optimiser steps (default 200 when no budget is given).")] = None,
    minutes: Annotated[Optional[float], typer.Option("--minutes", help="Budget: minutes of training.")] = None,
    out: Annotated[Optional[str], typer.Option("--out", "-o", help="Run folder (checkpoint, log.jsonl, summary.json/md, curves). Default: reports/pretrain-<corpus>-<segmenter>-<model>-<budget>, then the context and seed when not the defaults. Rerunning a finished run shows its result again.")] = None,
    resume: Annotated[bool, typer.Option("--resume", metavar="", help="Continue the run in --out from its checkpoint, exactly (the same arguments are required).")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", metavar="", help="Replace a run already in --out.")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", metavar="", help="Run even when the estimate says it takes over 24 hours on this machine.")] = False,
    allow_lossy: Annotated[bool, typer.Option("--allow-lossy", metavar="", help="Train even on a segmenter that fails the byte-accounting audit (toklab audit): its bits-per-byte is then not the text's.")] = False,
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", min=1, rich_help_panel=TRAIN_PANEL, help="Sequences per micro-batch.")] = 8,
    batch_tokens: Annotated[Optional[int], typer.Option("--batch-tokens", min=1, rich_help_panel=TRAIN_PANEL, help="Tokens per optimiser step, reached by gradient accumulation. Default: one micro-batch.")] = None,
    lr: Annotated[float, typer.Option("--lr", rich_help_panel=TRAIN_PANEL, help="Peak learning rate (AdamW).")] = 1e-3,
    schedule: Annotated[str, typer.Option("--schedule", rich_help_panel=TRAIN_PANEL, help="cosine (warmup, cosine decay to 10%) or one-cycle (Cramming: linear up to the middle, then down to 0).")] = "cosine",
    eval_every: Annotated[int, typer.Option("--eval-every", min=1, rich_help_panel=TRAIN_PANEL, help="Evaluate every N steps (and at the end).")] = 50,
    val_bytes: Annotated[Optional[int], typer.Option("--val-bytes", min=1, rich_help_panel=TRAIN_PANEL, help="Score on whole validation documents up to N bytes, chosen by a hash of their ids (the same for every segmenter). Default: 16 MiB; --val-all scores the whole split.")] = VAL_BYTES,
    val_all: Annotated[bool, typer.Option("--val-all", rich_help_panel=TRAIN_PANEL, metavar="", help="Score on every document of the validation split, however large.")] = False,
    eval_bytes: Annotated[Optional[int], typer.Option("--eval-bytes", min=1, rich_help_panel=TRAIN_PANEL, help="Evaluations before the last score the first N bytes of the same documents (the curve's points).")] = EVAL_BYTES,
    checkpoint_every: Annotated[int, typer.Option("--checkpoint-every", min=1, rich_help_panel=TRAIN_PANEL, help="Checkpoint every N steps (and at the end).")] = 100,
    train_seed: Annotated[int, typer.Option("--train-seed", rich_help_panel=TRAIN_PANEL, help="Seed for initialisation and data order.")] = 0,
    seeds: Annotated[int, typer.Option("--seeds", min=1, rich_help_panel=TRAIN_PANEL, help="Train N runs with seeds --train-seed, +1, ... (each in <out>/seed-<k>) and report the mean bits-per-byte with a 95% interval.")] = 1,
    device: Annotated[str, typer.Option("--device", rich_help_panel=TRAIN_PANEL, help="auto (CUDA when available), cpu or cuda[:N].")] = "auto",
    dtype: Annotated[str, typer.Option("--dtype", rich_help_panel=TRAIN_PANEL, help="auto (bf16 autocast on CUDA, float32 on CPU), float32 or bfloat16.")] = "auto",
    compile: Annotated[bool, typer.Option("--compile", rich_help_panel=TRAIN_PANEL, metavar="", help="torch.compile the model (CUDA runs).")] = False,
    nproc: Annotated[int, typer.Option("--nproc", min=1, rich_help_panel=TRAIN_PANEL, help="Train with DDP in N processes on this machine (one per GPU; gloo on a CPU), as torchrun --standalone --nproc-per-node N -m toklab pretrain ... does. --batch-size is per process, --batch-tokens the whole step's.")] = 1,
    as_json: Annotated[bool, JSON_OPTION] = False,
) -> None:
    """Train a GPT on the corpus cut by one segmenter (or, with --arch blt, a byte-latent patch
    model on its bytes cut into patches); report loss, bits-per-byte and FLOPs.

    The corpus is segmented into cached token shards (its train/validation split); training stops
    at the budget (--flops, --tokens, --steps or --minutes). Validation bits-per-byte does not
    depend on the tokeniser, so runs with different segmenters compare directly."""
    from toklab.gpt import distributed

    if nproc > 1:  # the same command in N processes under torchrun's launcher; rank 0 prints the result
        distributed.launch(nproc, _without_nproc(_ARGV))
        return
    from toklab.pretrain import pretrain, pretrain_seeds

    options: dict[str, Any] = dict(
        model=model, arch=arch, context=context, context_bytes=context_bytes, n_layer=n_layer, n_head=n_head, d_model=d_model,
        flops=flops, tokens=tokens, steps=steps, minutes=minutes, resume=resume, overwrite=overwrite, yes=yes, allow_lossy=allow_lossy, progress=True,
        batch_size=batch_size, batch_tokens=batch_tokens, lr=lr, schedule=schedule, eval_every=eval_every,
        val_bytes=None if val_all else val_bytes, eval_bytes=eval_bytes, checkpoint_every=checkpoint_every, device=device, dtype=dtype, compile=compile,
    )  # fmt: skip
    if seeds > 1:
        import dataclasses

        several = pretrain_seeds(corpus, segmenter, seeds=seeds, seed=train_seed, out=out, **options)
        if not distributed.world().main:  # under torchrun rank 0 alone reports
            return
        if as_json:
            _print_json({"runs": [_run_json(r) for r in several.runs], "val_bits_per_byte": dataclasses.asdict(several.val_bits_per_byte)})
            return
        for result in several.runs:
            _print_run(result, corpus.spec)
        bpb = several.val_bits_per_byte
        console.print(
            f"{seeds} seeds: val bits-per-byte {bpb.estimate:.4f}, 95% interval {bpb.low:.4f} to {bpb.high:.4f} ({bpb.method}); "
            + ", ".join(f"seed {r.train['seed']}: {r.val_bits_per_byte:.4f}" for r in several.runs),
            highlight=False,
        )
        return
    result = pretrain(corpus, segmenter, out=out, seed=train_seed, **options)
    if not distributed.world().main:
        return
    if as_json:
        _print_json(_run_json(result))
    else:
        _print_run(result, corpus.spec)


def _run_json(result: Any) -> dict[str, Any]:
    return {**result.summary(), "history": result.history}


def _print_run(result: Any, corpus_spec: str) -> None:
    from toklab.tables import digits, flops, table as make_table, thousands

    title = f"pretrain {result.segmenter} ({result.model['vocab_size']:,} ids) on {corpus_spec} (seed {result.train['seed']})"
    table = make_table(title, ["step", "tokens", "FLOPs", "train loss", "val loss", "val bits/byte"])
    loss = digits(4, nan="nan")  # a diverged run must read "nan", not an empty cell
    for h in result.history:
        table.add_row(thousands(h["step"]), thousands(h["tokens"]), flops(h["flops"]), "-" if h["train_loss"] is None else loss(h["train_loss"]), loss(h["val_loss"]), loss(h["val_bits_per_byte"]))
    console.print(table)
    mfu = f", MFU {100 * result.mfu:.1f}%" if result.mfu is not None else ""
    console.print(
        f"{result.steps:,} steps, {result.tokens:,} tokens, {result.flops:.3g} FLOPs ({result.flops_per_byte:.3g} per byte) in {result.wall_s:,.1f} s; "
        f"{result.tokens_per_s:,.0f} tokens/s, {result.bytes_per_s:,.0f} bytes/s{mfu}; peak memory {result.peak_memory_bytes / 2**20:,.0f} MiB on {result.device}",
        highlight=False,
    )
    console.print(
        f"val bits-per-byte {result.val_bits_per_byte:.4f} on {count(result.val_docs_scored, 'whole validation document')} ({result.val_bytes_scored:,} bytes; "
        f"the table's earlier rows score the first {result.train['eval_bytes'] or 0:,} bytes of them); training data: {result.epochs:.2f} passes, "
        f"{result.unique_train_bytes:,} distinct bytes; run: {result.out}",
        highlight=False,
    )
    if getattr(result, "parallel", None):
        job, each = result.parallel["job"], result.parallel["per_process"]
        per_gpu = f", MFU per GPU {100 * result.parallel['mfu_per_gpu']:.1f}%" if result.parallel.get("mfu_per_gpu") is not None else ""
        console.print(
            f"DDP: {result.parallel['processes']} processes ({result.parallel['backend']}); whole job {job['tokens_per_s']:,.0f} tokens/s, {job['flops_per_s']:.3g} FLOP/s; "
            f"per process {each['tokens_per_s']:,.0f} tokens/s, {each['flops_per_s']:.3g} FLOP/s{per_gpu}",
            highlight=False,
        )
    if result.patches:
        patches = result.patches
        console.print(f"patches: {patches['patcher']}, {patches['bytes_per_patch']:.2f} bytes per patch on the training split; BLT's logging convention: {patches['blt_logging_flops_per_byte']:.3g} FLOPs per byte", highlight=False)
    _print_notes(result.notes[1:])


@app.command("sample")
def sample_command(
    run: Annotated[str, typer.Option("--run", "-r", help="A run folder written by toklab pretrain.")],
    prompt: Annotated[str, typer.Option("--prompt", "-p", help="Text to continue.")] = "",
    max_tokens: Annotated[int, typer.Option("--max-tokens", "-n", min=1, help="Tokens to generate.")] = 200,
    temperature: Annotated[float, typer.Option("--temperature", min=0.0, help="Sampling temperature; 0 is greedy.")] = 0.8,
    top_k: Annotated[Optional[int], typer.Option("--top-k", min=1, help="Sample among the k likeliest tokens.")] = 50,
    seed: Annotated[int, typer.Option("--seed", help="Sampling seed.")] = 0,
    device: Annotated[str, typer.Option("--device", help="auto, cpu or cuda[:N].")] = "auto",
) -> None:
    """Generate text from a trained run, decoded by its own segmenter."""
    from toklab.pretrain import sample

    text = sample(run, prompt, max_new_tokens=max_tokens, temperature=temperature, top_k=top_k, seed=seed, device=device)
    console.print(text, markup=False, highlight=False)


# --- study -------------------------------------------------------------------------------------------


@app.command("study")
@corpus_command
def study_command(
    corpus: Any,
    segmenters: Annotated[Optional[list[str]], typer.Option("--segmenters", "--segmenter", "-s", help="Comma-separated segmenter specs (repeatable); blt:<patcher> rows train the byte-latent patch model instead, e.g. blt:entropy,target=4.5, blt:space, blt:static,size=4.5. Default: bytes,bpe:32k (with --smoke: bytes,bpe:4k).")] = None,
    flops: Annotated[Optional[str], typer.Option("--flops", help="Comma-separated FLOP budgets, e.g. 1e16,3e16,1e17 (with --smoke: 3e10,1e11).")] = None,
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="Model preset for every run: tiny, small, medium or gpt2-124m. Default: small (with --smoke: tiny).")] = None,
    context: Annotated[Optional[int], typer.Option("--context", min=2, help="Context length in tokens. Default: 256 (with --smoke: 64).")] = None,
    context_bytes: Annotated[Optional[int], typer.Option("--context-bytes", min=2, help="Equal context in bytes: each segmenter's context in tokens is the whole number nearest to N bytes at its own bytes/token.")] = None,
    seeds: Annotated[Optional[int], typer.Option("--seeds", min=1, help="Seeds per configuration; rows give the mean and a 95% interval. Default: 3.")] = None,
    filter_t: Annotated[Optional[float], typer.Option("--filter-t", help="Also train each segmenter on its Cramming-filtered train split (tokens <= t x chars); both rows are shown.")] = None,
    smoke: Annotated[bool, typer.Option("--smoke", metavar="", help="The CPU smoke configuration: tiny model, budgets 3e10 and 1e11, 3 seeds, a 65,536-byte validation sample; about a minute on the default corpus.")] = False,
    out: Annotated[Optional[str], typer.Option("--out", "-o", help="Study folder. Default: reports/study-<corpus>[-smoke], then each setting given that differs from the defaults (segmenters, budgets, model, context, seeds, --filter-t). A restarted study skips the runs that finished.")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", metavar="", help="Start again: replace the study in --out.")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", metavar="", help="Run even when the estimate says it takes over 24 hours on this machine.")] = False,
    allow_lossy: Annotated[bool, typer.Option("--allow-lossy", metavar="", help="Train even on a segmenter that fails the byte-accounting audit (toklab audit): its bits-per-byte is then not the text's.")] = False,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", "-b", min=1, rich_help_panel=TRAIN_PANEL, help="Sequences per micro-batch.")] = None,
    batch_tokens: Annotated[Optional[int], typer.Option("--batch-tokens", min=1, rich_help_panel=TRAIN_PANEL, help="Tokens per optimiser step (gradient accumulation).")] = None,
    lr: Annotated[float, typer.Option("--lr", rich_help_panel=TRAIN_PANEL, help="Peak learning rate.")] = 1e-3,
    schedule: Annotated[str, typer.Option("--schedule", rich_help_panel=TRAIN_PANEL, help="cosine or one-cycle.")] = "cosine",
    eval_every: Annotated[Optional[int], typer.Option("--eval-every", min=1, rich_help_panel=TRAIN_PANEL, help="Evaluate every N steps (and at the end). Default: 50 (with --smoke: 100).")] = None,
    val_bytes: Annotated[Optional[int], typer.Option("--val-bytes", min=1, rich_help_panel=TRAIN_PANEL, help="Score every run on whole validation documents up to N bytes, chosen by id hash. Default: 16 MiB (with --smoke: 65,536).")] = None,
    val_all: Annotated[bool, typer.Option("--val-all", rich_help_panel=TRAIN_PANEL, metavar="", help="Score every run on the whole validation split.")] = False,
    eval_bytes: Annotated[Optional[int], typer.Option("--eval-bytes", min=1, rich_help_panel=TRAIN_PANEL, help="Evaluations before the last score the first N bytes of the same documents. Default: 256 KiB (with --smoke: 16,384).")] = None,
    train_seed: Annotated[int, typer.Option("--train-seed", rich_help_panel=TRAIN_PANEL, help="The first seed; --seeds N uses this one and the N-1 after it.")] = 0,
    device: Annotated[str, typer.Option("--device", rich_help_panel=TRAIN_PANEL, help="auto, cpu or cuda[:N].")] = "auto",
    dtype: Annotated[str, typer.Option("--dtype", rich_help_panel=TRAIN_PANEL, help="auto, float32 or bfloat16.")] = "auto",
    compile: Annotated[bool, typer.Option("--compile", rich_help_panel=TRAIN_PANEL, metavar="", help="torch.compile the model (CUDA runs).")] = False,
    nproc: Annotated[int, typer.Option("--nproc", min=1, rich_help_panel=TRAIN_PANEL, help="Train each run with DDP in N processes on this machine (torchrun's launcher, one job per run); the study itself stays in this process.")] = 1,
    as_json: Annotated[bool, JSON_OPTION] = False,
) -> None:
    """Does better compression buy quality per FLOP? Every segmenter at every FLOP budget, one model shape.

    Pretrains each segmenter at each budget and compares validation bits-per-byte on the same
    held-out text.

    Writes table.md/csv/json, bits_per_byte_vs_flops.png and a summary of which segmenter wins
    at each budget; every run's own folder is kept under runs/."""
    from toklab.segmenters.registry import split_specs
    from toklab.study import run_study

    options: dict[str, Any] = {"lr": lr, "schedule": schedule, "device": device, "dtype": dtype, "compile": compile, "seed": train_seed}
    for key, value in (("batch_size", batch_size), ("batch_tokens", batch_tokens), ("val_bytes", val_bytes), ("eval_bytes", eval_bytes), ("eval_every", eval_every)):
        if value is not None:
            options[key] = value
    if val_all:
        options["val_bytes"] = None
    result = run_study(
        corpus, split_specs(segmenters) if segmenters else None, _floats(flops, "--flops") if flops else None,
        model=model, context=context, context_bytes=context_bytes, seeds=seeds, filter_t=filter_t, smoke=smoke, out=out, overwrite=overwrite,
        yes=yes, allow_lossy=allow_lossy, progress=True, nproc=nproc, **options,
    )  # fmt: skip
    if as_json:
        from toklab.study import to_json

        _print_json({**to_json(result), "report": str(result.out)})
        return
    _print_study(result)


def _print_study(result: Any) -> None:
    meta = result.meta
    context_text = f"context {meta['context_bytes']:,} bytes" if meta.get("context_bytes") else f"context {meta['context']}"
    from toklab.tables import digits, flops, mb, table as make_table, text_column, thousands

    from toklab.study import row_label

    # 80 columns: "(filtered)" goes into the segmenter's name, and each row's wall time is left to
    # table.md (the total is printed below)
    columns = ["vocab", "FLOPs", "bytes/\ntoken", "MB\nseen", "epochs", "bits/\nbyte", "95%\n±"]
    table = make_table(f"study {meta['corpus']}: model {meta['model']}, {context_text}, {count(len(meta['seeds']), 'seed')}", [text_column("segmenter", no_wrap=True), *columns], pad_edge=False)
    for r in result.table.itertuples():
        interval = digits(4, nan="nan")((r.val_bpb_high - r.val_bpb_low) / 2) if r.val_bpb_low == r.val_bpb_low else "n/a"
        # epochs and wall s stay without a thousands separator, as in study's table.md
        cells = [
            thousands(r.vocab_size), flops(r.budget_flops, 1), digits(3)(r.bytes_per_token), mb(r.bytes_seen), f"{r.epochs:.2f}", digits(4, nan="nan")(r.val_bits_per_byte), interval,
        ]  # fmt: skip
        table.add_row(row_label(r.segmenter, r.filtered), *cells)
    console.print(table)
    console.print(f"scored on {count(meta['val_docs_scored'], 'whole validation document')} ({meta['val_bytes_scored']:,} bytes), the same for every run; "
                  f"training took {result.table['wall_s'].sum():,.0f} s in all (each row's time is in table.md)", highlight=False)
    for line in result.summary:
        console.print(line, highlight=False)
    _print_notes(result.notes)
    if result.skipped_runs:
        console.print(f"{count(result.skipped_runs, 'finished run')} {'was' if result.skipped_runs == 1 else 'were'} reused from an earlier start")
    console.print(f"report: {result.out}")


# --- tokenizer commands -----------------------------------------------------------------------

def _spec_help() -> str:
    from toklab.segmenters.kinds import builtin_examples

    return f"Segmenter spec: {builtin_examples()} ('toklab segmenters' lists every kind, plugins included, and its options)."


SPEC_HELP = _spec_help()  # the built-in kinds, without loading the registry
tokenizer_app = typer.Typer(help="Train, export and inspect segmenters (tokenisers). " + SPEC_HELP, short_help="Train, export and inspect segmenters (tokenisers).", no_args_is_help=True)
app.add_typer(tokenizer_app, name="tokenizer")


@tokenizer_app.command("train")
@corpus_command(lazy=True)
def tokenizer_train_command(
    corpus: Any,
    spec: Annotated[str, typer.Argument(help=SPEC_HELP + " Options follow commas, e.g. bpe:32k,regex=o200k.")],
    out: Annotated[str, typer.Option("--out", "-o", help="Folder to save the segmenter in (BPE also as tokenizer.json, SentencePiece as tokenizer.model).")],
    overwrite: Annotated[bool, typer.Option("--overwrite", metavar="", help="Replace a segmenter already saved in --out.")] = False,
    no_cache: Annotated[bool, typer.Option("--no-cache", metavar="", help="Train afresh instead of reusing a cached training of the same spec on the same corpus.")] = False,
) -> None:
    """Train a segmenter on the corpus's train split (or load a pretrained one) and save it to --out."""
    import time
    from pathlib import Path

    from toklab.segmenters import get_segmenter
    from toklab.segmenters.base import MANIFEST
    from toklab.segmenters.registry import needs_training_corpus

    from toklab.files import check_folder, check_outside
    from toklab.outputs import OutputPolicy, Plan, plan_output, replaced_note

    target = check_folder(Path(out).expanduser())
    opened = corpus() if needs_training_corpus(spec) else None
    if opened is not None:
        check_outside(target, opened.input_roots())
    saved = (target / MANIFEST).is_file()
    plan = plan_output(target, OutputPolicy("saved segmenter"), previous={} if saved else None, settings=None, overwrite=overwrite)
    replacing = plan is Plan.REPLACE
    start = time.perf_counter()
    segmenter = get_segmenter(spec, opened, cache=not no_cache, progress=True)
    seconds = time.perf_counter() - start
    segmenter.save(target)
    console.print(f"saved {segmenter.spec} ({segmenter.kind}, {segmenter.vocab_size:,} ids) to {target} ({seconds:.1f} s)", highlight=False)
    if replacing:
        _print_notes([replaced_note(target, "saved segmenter")])
    for path in sorted(target.iterdir()):
        console.print(f"  {path.name}  ({path.stat().st_size:,} bytes)")
    _note_if_lossy(segmenter)


@tokenizer_app.command("encode")
@corpus_command(lazy=True)
def tokenizer_encode_command(
    corpus: Any,
    spec: Annotated[str, typer.Argument(help=SPEC_HELP + " Trainable kinds are trained on --corpus (or taken from the cache).")],
    text: Annotated[Optional[str], typer.Option("--text", help="Text to encode.")] = None,
    file: Annotated[Optional[str], typer.Option("--file", "-f", help="Encode this file's text instead (UTF-8); '-' reads standard input. Without --text or --file, text piped on standard input is encoded.")] = None,
    show_ids: Annotated[bool, typer.Option("--ids", metavar="", help="Also list every token id with its bytes.")] = False,
    as_json: Annotated[bool, typer.Option("--json", metavar="", help="Print the ids, tokens and counts as JSON instead.")] = False,
) -> None:
    """Show how a segmenter cuts text into tokens: coloured pieces, ids and counts.

    The text is encoded exactly as given: text read from a file or a pipe keeps its final newline."""
    from pathlib import Path

    from toklab.segmenters import get_segmenter
    from toklab.segmenters.registry import needs_training_corpus

    if text is not None and file is not None:
        raise ToklabError("give exactly one of --text or --file")
    piped = text is None and file is None
    if piped and not _stdin_piped():
        raise ToklabError("give exactly one of --text or --file, or pipe the text on standard input")
    if piped or file == "-":
        text = _read_stdin()
        if piped and not text:
            raise ToklabError("standard input is empty: pipe the text to encode, or give --text or --file")
    elif file is not None:
        try:
            text = Path(file).read_bytes().decode("utf-8", errors="replace")
        except OSError as exc:
            raise ToklabError(f"cannot read {file}: {exc.strerror}") from None
    assert text is not None
    trainable = needs_training_corpus(spec)
    segmenter = get_segmenter(spec, corpus() if trainable else None, progress=True)
    ids = segmenter.encode(text)
    if as_json:
        n_bytes = len(text.encode("utf-8", errors="surrogatepass"))
        tokens = [segmenter.token_bytes(i).decode("utf-8", errors="backslashreplace") for i in ids]
        counts = {"tokens": len(ids), "chars": len(text), "bytes": n_bytes}
        print(json.dumps({"spec": segmenter.spec, "vocab_size": segmenter.vocab_size, "lossless": segmenter.lossless, "ids": [int(i) for i in ids], "tokens": tokens, "counts": counts}))
        _note_if_lossy(segmenter)
        return
    styles = ["on grey23", "on dark_blue", "on dark_green", "on dark_red"]
    shown, pending, group = Text(), b"", 0
    for i, token_id in enumerate(ids):
        pending += segmenter.token_bytes(token_id)
        try:
            piece = pending.decode("utf-8")
        except UnicodeDecodeError:
            if i + 1 < len(ids):
                continue  # a character split across tokens is shown once, in one colour
            piece = pending.decode("utf-8", errors="replace")
        shown.append(piece, style=styles[group % len(styles)])
        pending, group = b"", group + 1
    console.print(shown)
    n_bytes, n_chars = len(text.encode("utf-8")), len(text)
    per_token = f"{n_bytes / len(ids):.2f} bytes/token, {len(ids) / max(n_chars, 1):.3f} tokens/char" if ids else "no tokens"
    console.print(f"{segmenter.spec} ({segmenter.vocab_size:,} ids): {count(len(ids), 'token')} for {count(n_chars, 'char')}, {count(n_bytes, 'byte')} ({per_token})", highlight=False)
    if show_ids:
        table = Table(box=box.SIMPLE_HEAD)
        for column in ("#", "id", "bytes", "piece"):
            table.add_column(column, justify="right" if column != "piece" else "left")
        for i, token_id in enumerate(ids):
            piece = segmenter.token_bytes(token_id)
            table.add_row(str(i), str(token_id), str(len(piece)), Text(repr(piece.decode("utf-8", errors="backslashreplace"))))
        console.print(table)
    _note_if_lossy(segmenter)


def _stdin_piped() -> bool:
    """Whether standard input can be read and is not a terminal (a pipe, a file, /dev/null)."""
    stream = sys.stdin
    try:
        return stream is not None and stream.readable() and not stream.isatty()
    except (OSError, ValueError):
        return False


def _stdin_terminal() -> bool:
    """Whether standard input is a terminal a question can be asked on."""
    try:
        return sys.stdin is not None and sys.stdin.isatty()
    except (OSError, ValueError):
        return False


def _read_stdin() -> str:
    """All of standard input as text (UTF-8, invalid bytes replaced)."""
    stream = sys.stdin
    if stream is None:
        raise ToklabError("standard input is closed; give --text or --file")
    try:
        buffer = getattr(stream, "buffer", None)
        data = buffer.read() if buffer is not None else stream.read().encode("utf-8", errors="surrogateescape")
    except (OSError, ValueError) as exc:
        raise ToklabError(f"cannot read standard input: {getattr(exc, 'strerror', None) or exc}") from None
    return data.decode("utf-8", errors="replace")


def _parse_ids(items: list[str]) -> list[int]:
    """Token ids from arguments, each one id or several separated by commas or spaces ('104,105',
    '[104, 105]' as `encode --json` prints them); '-' reads them from standard input."""
    import re

    texts: list[str] = []
    for item in items:
        texts.append(_read_stdin() if item == "-" else item)
    ids: list[int] = []
    for word in (w for text in texts for w in re.split(r"[\s,\[\]]+", text) if w):
        try:
            ids.append(int(word))
        except ValueError:
            shown = word if len(word) <= 40 else word[:37] + "..."
            raise ToklabError(f"'{shown}' is not a token id (ids are whole numbers, e.g. 104,105)") from None
    if not ids:
        raise ToklabError("no token ids given (e.g. toklab tokenizer decode bytes 104,105)")
    return ids


@tokenizer_app.command("decode")
@corpus_command(lazy=True)
def tokenizer_decode_command(
    corpus: Any,
    spec: Annotated[str, typer.Argument(help=SPEC_HELP + " Trainable kinds are trained on --corpus (or taken from the cache).")],
    ids: Annotated[list[str], typer.Argument(metavar="IDS", help="Token ids: several arguments, or one with ids separated by commas or spaces ('104,105'); '-' reads them from standard input.")],
) -> None:
    """Print the text that token ids stand for."""
    from toklab.segmenters import get_segmenter
    from toklab.segmenters.registry import needs_training_corpus

    token_ids = _parse_ids(ids)
    trainable = needs_training_corpus(spec)
    segmenter = get_segmenter(spec, corpus() if trainable else None, progress=True)
    size = segmenter.vocab_size
    for token_id in token_ids:
        if not 0 <= token_id < size:
            raise ToklabError(f"token id {token_id} is out of range for {segmenter.spec} (ids 0 to {size - 1:,})")
    try:
        text = segmenter.decode(token_ids)
    except Exception:  # a library's own error for an id inside the range that stands for nothing
        for token_id in token_ids:
            try:
                segmenter.decode([token_id])
            except Exception:
                raise ToklabError(f"token id {token_id} stands for no token in {segmenter.spec}") from None
        raise
    print(text)
    _note_if_lossy(segmenter)


# --- segmenters and cache ---------------------------------------------------------------------


def _ago(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit} ago"
    return "just now"


def _option_default(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    return f"{value:,}" if isinstance(value, int) else str(value)


@app.command("segmenters")
def segmenters_command(
    as_json: Annotated[bool, typer.Option("--json", metavar="", help="Print the description as JSON instead.")] = False,
) -> None:
    """List every segmenter kind: what it is, its spec, and its options with defaults and allowed values.

    Also shows which tiktoken encodings can be used offline right now (TIKTOKEN_CACHE_DIR)."""
    from toklab.segmenters.registry import describe

    data = describe()
    if as_json:
        print(json.dumps(data, indent=2, default=str))
        return
    for kind in data["kinds"]:
        console.print(Text.assemble((kind["syntax"], "bold cyan"), "  ", kind["summary"]))
        lines: list[Text] = []
        if kind.get("error"):
            lines.append(Text.assemble(("cannot be loaded: ", "red"), kind["error"]))
        if kind["example"] != kind["syntax"]:
            lines.append(Text(f"example: {kind['example']}"))
        vocab = kind.get("vocab_size")
        if vocab:
            default = f", default {vocab['default']:,}" if vocab.get("default") else ""
            holds = f" (the smallest holds {vocab['min_holds']})" if vocab.get("min_holds") else ""
            lines.append(Text(f"vocabulary size: {vocab['min']:,} to {vocab['max']:,}{default}; 8k = 8,000{holds}"))
        known = kind["known_args"]
        for label, state in (("available offline now", True), ("not available offline", False), ("availability unknown", None)):
            names = [a["name"] for a in known if a.get("available", True) is state]
            if names:
                lines.append(Text(f"{label}: {', '.join(names)}"))
        for line in lines:
            console.print(Text("  ") + line)
        if kind["options"]:
            table = Table(box=None, padding=(0, 2), show_edge=False, pad_edge=False)
            table.add_column("  option", no_wrap=True)
            table.add_column("default", no_wrap=True)
            table.add_column("allowed")
            table.add_column("what")
            for option in kind["options"]:
                table.add_row(Text("  " + option["name"]), Text(_option_default(option["default"])), Text(option["allowed"]), Text(option["help"]))
            console.print(table)
        console.print()


cache_app = typer.Typer(help="Show the toklab cache (trained segmenters, token data, built corpora); 'toklab cache clear' removes them.", invoke_without_command=True)
app.add_typer(cache_app, name="cache")


@cache_app.callback()
def cache_command(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", metavar="", help="Print the entries as JSON instead.")] = False,
) -> None:
    """Show the toklab cache: its folder, every entry with its kind and size, and the total.

    The folder is TOKLAB_CACHE_DIR, else $XDG_CACHE_HOME/toklab, else ~/.cache/toklab."""
    if ctx.invoked_subcommand is not None:
        return
    import time

    from toklab.cache import KINDS, cache_info, kind_label

    info = cache_info()
    if as_json:
        print(json.dumps(info.to_dict(), indent=2, default=str))
        return
    source = "default" if info.source == "default" else f"from {info.source}"
    console.print(Text(f"cache: {info.path}  ({source})"))
    if not info.entries:
        console.print("empty: nothing cached yet" if not info.exists else "empty")
        return
    now = time.time()
    table = Table(box=box.SIMPLE_HEAD)
    for column in ("kind", "size", "written", "entry"):
        table.add_column(column, justify="right" if column == "size" else "left", no_wrap=column != "entry", overflow="fold")
    for entry in info.entries:
        what = entry.description or entry.note
        if entry.note and entry.description:
            what += f" ({entry.note})"
        name = entry.name.split("/", 1)[-1] if entry.kind in KINDS else entry.name
        table.add_row(Text(entry.kind), human_bytes(entry.bytes), _ago(now - entry.modified), Text.assemble(name, "\n", (what, "dim")))
    console.print(table)
    for kind, counts in info.by_kind().items():
        console.print(Text(f"  {kind} ({kind_label(kind)}): {count(counts['entries'], 'entry', 'entries')}, {human_bytes(counts['bytes'])}"))
    console.print(Text(f"total: {human_bytes(info.total_bytes)} ({info.total_bytes:,} bytes)"))


@cache_app.command("clear")
def cache_clear_command(
    yes: Annotated[bool, typer.Option("--yes", "-y", metavar="", help="Clear without asking.")] = False,
    older_than: Annotated[Optional[str], typer.Option("--older-than", help="Only entries written longer ago than this, e.g. 30d, 12h, 2w.")] = None,
    kind: Annotated[Optional[list[str]], typer.Option("--kind", help="Only entries of this kind (repeatable or comma-separated): corpora, segmenters, tokens, temporary.")] = None,
) -> None:
    """Remove what toklab wrote to its cache (after asking). Anything else in the folder is left alone."""
    from toklab.cache import cache_info, check_clearable, clear, parse_age, parse_kinds, select

    age = parse_age(older_than) if older_than is not None else None
    kinds = parse_kinds(kind) if kind else None
    info = cache_info()
    check_clearable(info.path)  # (cache_info has refused a root or home folder already)
    chosen = select(info, older_than=age, kinds=kinds)
    left = [e for e in info.entries if not e.removable]
    if not chosen:
        console.print(Text(f"nothing to clear in {info.path}"))
    else:
        size = sum(e.bytes for e in chosen)
        what = f"{count(len(chosen), 'cache entry', 'cache entries')} ({human_bytes(size)}) from {info.path}"
        if not yes:
            if not _stdin_terminal():
                raise ToklabError(f"cache clear would remove {what}; pass --yes to confirm (there is no terminal to ask)")
            if not typer.confirm(f"remove {what}?", default=False):
                console.print("nothing removed")
                return
        result = clear(chosen)
        console.print(Text(f"removed {count(len(result.removed), 'entry', 'entries')}, {human_bytes(result.bytes_freed)} freed"))
        for entry, why in result.failed:
            err_console.print(Text.assemble(("note: ", "yellow"), f"could not remove {entry.name}: {why}"))
    if left:
        names = ", ".join(e.name for e in left[:5]) + (f" and {len(left) - 5} more" if len(left) > 5 else "")
        err_console.print(Text.assemble(("note: ", "yellow"), f"left {len(left)} entr{'y' if len(left) == 1 else 'ies'} toklab did not write or that are in use: {names}"))


RESUMABLE = {"filter": "rerun with --resume to continue", "pretrain": "rerun with --resume to continue", "study": "run the same command again to continue"}


def _error(message: str) -> None:
    err_console.print(Text.assemble(("error: ", "bold red"), message.strip().splitlines()[0] if message.strip() else "failed"), soft_wrap=True)


def _command_of(argv: list[str]) -> str | None:
    return next((a for a in argv if not a.startswith("-")), None)


def _clean_argv(argv: list[str]) -> list[str]:
    """Arguments as text: bytes that are not UTF-8 (which Python keeps as lone surrogates) become U+FFFD,
    except in paths that exist, whose names must stay as the filesystem has them."""
    import os

    out = []
    for arg in argv:
        if any("\udc80" <= c <= "\udcff" for c in arg) and not os.path.exists(arg):
            arg = arg.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        out.append(arg)
    return out


METAVARS = {"--corpus": "CORPUS", "--out": "DIR", "--report": "DIR", "--run": "DIR", "--segmenters": "SPECS", "--segmenter": "SPEC", "--file": "FILE"}
TYPE_METAVARS = {"int": "INTEGER", "float": "NUMBER", "str": "TEXT", "list[str]": "TEXT"}


def _unwrap(text: str) -> str:
    """Help paragraphs as one line each, for the terminal to wrap at its own width."""
    paragraphs = inspect.cleandoc(text).split("\n\n")
    return "\n\n".join(" ".join(line.strip() for line in paragraph.splitlines()) for paragraph in paragraphs)


def _polish(command: Any) -> Any:
    """Readable help for every command: paragraphs that re-wrap, and value names such as SPEC, DIR
    or INTEGER instead of Python types (<list[str]>); flags show no value at all."""
    if getattr(command, "help", None):
        command.help = _unwrap(command.help)
    for param in getattr(command, "params", []):
        if getattr(param, "is_flag", False):
            param.metavar = ""
        elif param.param_type_name == "argument":
            param.display_type_rich = lambda ctx: None  # its name (SPEC, DIRECTORY) says enough
        elif param.metavar is None:
            names = [o for o in param.opts if o.startswith("--")]
            named = next((METAVARS[o] for o in names if o in METAVARS), None)
            bare = param.bare_type() if hasattr(param, "bare_type") else ""
            param.metavar = named or TYPE_METAVARS.get(bare) or bare.upper() or None
    own_help_option = command.get_help_option

    def help_option(ctx: Any) -> Any:
        option = own_help_option(ctx)
        if option is not None:
            option.metavar = ""
        return option

    command.get_help_option = help_option
    for sub in getattr(command, "commands", {}).values():
        _polish(sub)
    return command


_ARGV: list[str] = []  # this invocation's arguments: --nproc starts the same command in N processes


def _without_nproc(argv: list[str]) -> list[str]:
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            out.append(arg)
    return out


def main(argv: Optional[list[str]] = None) -> None:
    """Entry point: run the app; a user's mistake is one line on stderr and exit code 2."""
    from typer._click.exceptions import NoArgsIsHelpError

    argv = _clean_argv(list(sys.argv[1:] if argv is None else argv))
    _ARGV[:] = argv
    code = 0
    try:
        try:
            result = _polish(typer.main.get_command(app)).main(args=argv, prog_name="toklab", standalone_mode=False)
        except SystemExit as exc:  # typer exits 1 itself on a closed pipe
            if isinstance(exc.__context__, BrokenPipeError):
                raise exc.__context__ from None
            raise
        code = result if isinstance(result, int) else 0
        if code == 130:  # typer turns Ctrl-C into a silent exit code 130
            raise KeyboardInterrupt
    except ToklabError as exc:
        _error(str(exc))
        from toklab.gpt.distributed import record_failure

        record_failure(str(exc).strip().splitlines()[0] if str(exc).strip() else "failed")  # for the --nproc launcher; nothing otherwise
        code = 2
    except (KeyboardInterrupt, typer.Abort):
        hint = RESUMABLE.get(_command_of(argv) or "")
        err_console.print(f"interrupted{'; ' + hint if hint else ''}")
        code = 130
    except NoArgsIsHelpError:
        code = 0  # the help was shown
    except typer.TyperException as exc:  # the option parser's mistakes: one line, like every other error
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        command = _command_of(argv)
        known = {c.name for c in app.registered_commands} | {g.name for g in app.registered_groups}
        _error(f"{message} (see 'toklab {command + ' ' if command in known else ''}--help')")
        code = 2
    except BrokenPipeError:  # e.g. `toklab corpus sample | head`: the reader has all it wants
        import os

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so the interpreter's final flush does not fail again
        code = 0
    except OSError as exc:  # a full disk, a read-only folder, a file where a folder should be
        where = f" {exc.filename}" if exc.filename else ""
        _error(f"cannot read or write{where}: {exc.strerror or exc}")
        code = 2
    sys.exit(code)


if __name__ == "__main__":
    main()
