"""One 50 MB document through compare, filter --dry-run and pretrain's token-data build, for the
kinds that can be cut: peak RSS and time, before (TOKLAB_CUT_CHARS=10**12: every text encoded
whole) and after (the default: exact pieces of about 1 MiB); then encode time at 5/10/20/50 MB.

    TIKTOKEN_CACHE_DIR=/work/shared/tiktoken TOKLAB_CACHE_DIR=/tmp/longcache \\
        python reports/benchmarks/long_documents.py
    KINDS=hf:wordpiece30k,spm:nfkc-unigram16k,entropy:model=transformer,patches:space,patches:entropy ...  (the kinds cut since the second round)
    STAGES=peak PEAK_MB=1,4 KINDS=entropy:model=transformer ...  (count_tokens' peak on the first 1 and 4 MB)

Every case runs in a child process of its own (peak RSS = that child's ru_maxrss). The document is
the shared corpora's text (sotu, email, code, udhr) joined with "\\n" and repeated to 50 MB, written
with 40 short documents as /tmp/longdoc/docs.jsonl (the short ones give pretrain its other split).
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

WORK = Path("/tmp/longdoc")
DOCS = WORK / "docs.jsonl"
BPE = WORK / "bpe32k"
SHARED = Path(os.environ.get("TOKLAB_SHARED_DIR", "/work/shared")) / "corpora"
DOC_BYTES = 50_000_000
FRACTION = 0.5
SENTENCEPIECE = {"unigram:32k": WORK / "unigram32k", "spm-bpe:32k": WORK / "spmbpe32k"}  # the default corpus's, from the cache
UNCUT = {"entropy:target=4.5": WORK / "entropy45", "zstd-dict:32k": WORK / "zstd32k"}  # kinds encoded whole: their peak
# Cut since 2026-12-02 (second round): trained here in `prepare`, or patchers built in the child
WORDPIECE = WORK / "wordpiece30k.json"  # a BERT-style tokenizer.json: BertNormalizer, BertPreTokenizer, WordPiece
NFKC_SPM = WORK / "nfkc_unigram16k.model"  # spm_train's defaults: nmt_nfkc, dummy prefix, whitespace removal
TRANSFORMER = WORK / "entropy_transformer"  # entropy:model=transformer (the spec's defaults, 300 steps), saved
PATCHES = {"patches:space": "space", "patches:entropy": str(WORK / "entropy45")}  # BLT flagged bytes: pretrain only
KINDS = {"bytes": "bytes", "bpe:32k": str(BPE), "tiktoken:cl100k_base": "tiktoken:cl100k_base", **{k: str(v) for k, v in {**SENTENCEPIECE, **UNCUT}.items()},
         "hf:wordpiece30k": f"hf:{WORDPIECE}", "spm:nfkc-unigram16k": f"spm:{NFKC_SPM}", "entropy:model=transformer": str(TRANSFORMER), **PATCHES}
LOSSY = {"hf:wordpiece30k", "spm:nfkc-unigram16k"}  # no byte-exact ids: pretrain refuses them, so compare and filter only
if os.environ.get("KINDS"):  # e.g. KINDS=unigram:32k,spm-bpe:32k to run some
    KINDS = {k: KINDS[k] for k in os.environ["KINDS"].split(",")}
BEFORE = str(10**12)
MEMORY_LIMIT = 12 * 2**30  # a child that needs more fails with MemoryError (reported), not the machine


def corpus_text() -> str:
    import toklab

    return "\n".join(d.text for name in ("sotu", "email", "code", "udhr") for d in toklab.open_corpus(str(SHARED / name), val_fraction=0.0).documents())


def prepare() -> None:
    import toklab
    from toklab import split_of
    from toklab.segmenters.bpe import BPESegmenter

    WORK.mkdir(exist_ok=True)
    text = corpus_text()
    if not (BPE / "toklab-segmenter.json").is_file():
        BPESegmenter.train([text[:8_000_000]], 32_000).save(BPE)  # 8 MB of it: enough for 32k, quick
    for spec, folder in {**SENTENCEPIECE, **UNCUT}.items():
        if not (folder / "toklab-segmenter.json").is_file():
            from toklab.segmenters import get_segmenter

            get_segmenter(spec, toklab.open_corpus("default")).save(folder)
    if not WORDPIECE.is_file():
        from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

        tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
        tok.normalizer = normalizers.BertNormalizer(lowercase=True)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.decoder = decoders.WordPiece()
        tok.train_from_iterator([text[:8_000_000]], trainers.WordPieceTrainer(vocab_size=30_000, special_tokens=["[UNK]"]))
        tok.save(str(WORDPIECE))
    if not NFKC_SPM.is_file():
        import io

        import sentencepiece as spm

        model = io.BytesIO()
        spm.SentencePieceTrainer.train(sentence_iterator=iter(text[:8_000_000].split("\n")), model_writer=model, vocab_size=16_000,
                                       model_type="unigram", normalization_rule_name="nmt_nfkc", max_sentence_length=1 << 20, minloglevel=2)
        NFKC_SPM.write_bytes(model.getvalue())
    if not (TRANSFORMER / "toklab-segmenter.json").is_file():
        from toklab.segmenters.entropy import EntropySegmenter

        EntropySegmenter.train([text[:8_000_000]], 4096, model="transformer", target="4.5").save(TRANSFORMER)
    doc = (text + "\n") * max(1, DOC_BYTES // len(text.encode()))
    doc += text[: DOC_BYTES - len(doc.encode())] if len(doc.encode()) < DOC_BYTES else ""
    long_id = next(f"long-{k}" for k in range(1000) if split_of(f"long-{k}", FRACTION) == "val")
    short = [{"id": f"short-{k}", "text": line} for k, line in enumerate(t for t in text.split("\n") if len(t) > 40) if k < 40]
    with DOCS.open("w") as f:
        for r in [{"id": long_id, "text": doc}, *short]:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    assert toklab.open_corpus(str(DOCS), val_fraction=FRACTION)  # readable
    print(f"document: {len(doc.encode()) / 1e6:.1f} MB, {len(doc):,} chars; bpe: {BPE}", flush=True)


def rss_mib() -> int:
    """This process's peak RSS so far (MiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024


def case(kind: str, stage: str) -> dict:
    """One stage for one kind, in this (child) process."""
    import toklab
    from toklab.segmenters import get_segmenter

    spec = KINDS[kind]
    if kind in PATCHES:  # BLT flagged bytes: not a registry kind; only pretrain's data uses them
        from toklab.segmenters.patchers import load_patcher

        seg = load_patcher(spec)
    else:
        seg = get_segmenter(spec)
    corpus = toklab.open_corpus(str(DOCS), val_fraction=FRACTION)
    base = rss_mib()
    start = time.perf_counter()
    if stage == "compare":
        from toklab.comparison import run_compare

        row = run_compare(corpus, [spec], compressors=False).table.iloc[0]
        result = {"tokens": int(row["tokens"]), "bits_per_byte": float(row["bits_per_byte"])}
    elif stage == "filter":
        from toklab.filter import filter_corpus

        res = filter_corpus(corpus, threshold=0.3, segmenter=seg, dry_run=True, workers=1)
        result = {"kept": res.kept, "rejected": res.rejected, "ratios": sorted(round(e["ratio"], 12) for e in res.examples)[:3]}
    else:
        from toklab.gpt.data import build_token_data

        data = build_token_data(corpus, seg, cache=False)
        digest = hashlib.sha256()
        for p in [*data.val_shards, *data.train_shards]:
            digest.update(p.read_bytes())
        result = {"tokens": data.tokens("val") + data.tokens("train"), "shards_sha256": digest.hexdigest()[:16]}
    return {"kind": kind, "stage": stage, "seconds": round(time.perf_counter() - start, 1), "rss_before_mib": base, "peak_rss_mib": rss_mib(), "result": result}


def scaling(kind: str) -> dict:
    """Encode time (encode_pieces, as the consumers use it) of the first 5/10/20/50 MB of the doc."""
    from toklab.segmenters import get_segmenter

    if kind in PATCHES:
        from toklab.segmenters.patchers import load_patcher

        seg = load_patcher(KINDS[kind])
    else:
        seg = get_segmenter(KINDS[kind])
    doc = json.loads(DOCS.open().readline())["text"]
    out = {}
    for mb in (5, 10, 20, 50):
        text = doc[: mb * 1_000_000]  # characters; the text is nearly all ASCII
        start = time.perf_counter()
        n = sum(len(ids) for _, _, ids in seg.encode_pieces([text]))
        out[mb] = {"seconds": round(time.perf_counter() - start, 2), "tokens": n}
    return {"kind": kind, "scaling": out, "peak_rss_mib": rss_mib()}


def prefix_file(mb: str) -> Path:
    return WORK / f"prefix-{mb}mb.txt"


def write_prefix(mb: str) -> None:
    """The document's first `mb` MB (characters; the text is nearly all ASCII) as a text file."""
    with DOCS.open() as f:
        prefix_file(mb).write_text(json.loads(f.readline())["text"][: int(float(mb) * 1_000_000)], encoding="utf-8")


def peak(kind: str, mb: str) -> dict:
    """count_tokens of the document's first `mb` MB alone: peak RSS and time (the PEAK stage, for a
    kind too slow for 50 MB here: its peak at two sizes shows whether it grows with the text)."""
    from toklab.segmenters import get_segmenter

    seg = get_segmenter(KINDS[kind])
    text = prefix_file(mb).read_text(encoding="utf-8")  # not the 50 MB document: its parse would set the peak
    base = rss_mib()
    start = time.perf_counter()
    tokens = int(seg.count_tokens([text])[0])
    return {"kind": kind, "mb": float(mb), "seconds": round(time.perf_counter() - start, 1), "tokens": tokens, "rss_before_mib": base, "peak_rss_mib": rss_mib()}


def one_pretoken() -> dict:
    """One pre-token with no place to cut (a run of letters): tiktoken (cl100k_base, and bpe:32k's
    fast path) and tokenizers (bpe:32k with fast=off) on 0.1 / 1 / 4 MB of it."""
    from toklab.segmenters import get_segmenter
    from toklab.segmenters.bpe import BPESegmenter

    bpe = get_segmenter(KINDS["bpe:32k"])
    kinds = {"tiktoken:cl100k_base": get_segmenter("tiktoken:cl100k_base"), "bpe:32k": bpe,
             "bpe:32k,fast=off": BPESegmenter(bpe._tokenizer_json, bpe.pattern_name, fast=False)}
    out: dict = {}
    for name, seg in kinds.items():
        for n in (100_000, 1_000_000, 4_000_000):
            text = "ab" * (n // 2)
            start = time.perf_counter()
            chunks = list(seg.encode_chunks(text))
            out[f"{name} {n / 1e6:g} MB"] = {"seconds": round(time.perf_counter() - start, 2), "pieces": len(chunks), "tokens": sum(c.size for c in chunks)}
    return {"one_pretoken": out, "peak_rss_mib": rss_mib()}


def child(args: list[str], cut: str | None = None) -> dict:
    env = dict(os.environ)
    if cut is not None:
        env["TOKLAB_CUT_CHARS"] = cut
    else:
        env.pop("TOKLAB_CUT_CHARS", None)
    proc = subprocess.run([sys.executable, __file__, *args], env=env, capture_output=True, text=True)
    if proc.stdout.startswith("document:"):
        print(proc.stdout.splitlines()[0], flush=True)
    if proc.returncode:
        return {"args": args, "error": proc.stderr.strip().splitlines()[-1:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    if len(sys.argv) > 1:
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
        what = sys.argv[1]
        if what == "prepare":
            prepare()
            print(json.dumps({}))
            return
        if what == "case":
            res = case(sys.argv[2], sys.argv[3])
        elif what == "peak":
            res = peak(sys.argv[2], sys.argv[3])
        elif what == "prefix":
            write_prefix(sys.argv[2])
            res = {}
        else:
            res = scaling(sys.argv[2]) if what == "scaling" else one_pretoken()
        print(json.dumps(res))
        return
    # This process stays small: Linux carries a process's peak RSS over fork and exec into the
    # child's ru_maxrss, so the document is made in a child too.
    child(["prepare"])
    stages = os.environ.get("STAGES", "compare,filter,pretrain,scaling,pretoken").split(",")  # e.g. STAGES=compare to rerun one
    for stage in ("compare", "filter", "pretrain"):
        if stage not in stages:
            continue
        for kind in KINDS:
            if (kind in PATCHES and stage != "pretrain") or (kind in LOSSY and stage == "pretrain"):
                continue
            for label, cut in (("before", BEFORE), ("after", None)):
                print(json.dumps({"mode": label, **child(["case", kind, stage], cut)}), flush=True)
    if "scaling" in stages:
        for kind in KINDS:
            for label, cut in (("before", BEFORE), ("after", None)):
                print(json.dumps({"mode": label, **child(["scaling", kind], cut)}), flush=True)
    if "pretoken" in stages:
        print(json.dumps(child(["pretoken"])), flush=True)
    if "peak" in stages:  # STAGES=peak PEAK_MB=1,4 KINDS=entropy:model=transformer: peaks at smaller sizes
        sizes = os.environ.get("PEAK_MB", "1,4").split(",")
        for mb in sizes:
            child(["prefix", mb])
        for kind in KINDS:
            for mb in sizes:
                for label, cut in (("before", BEFORE), ("after", None)):
                    print(json.dumps({"mode": label, **child(["peak", kind, mb], cut)}), flush=True)


if __name__ == "__main__":
    main()
