"""The fast n-gram entropies (one value per distinct context, direct lookup tables, chunks) and the
vectorised encode_batch give exactly what the per-position computation gave before them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import toklab
from toklab.segmenters import entropy as entropy_module
from toklab.segmenters import entropy_models
from toklab.segmenters.entropy import EntropySegmenter, _cut
from toklab.segmenters.entropy_models import NgramEntropyModel
from toklab.segmenters.patching import patch_starts

CORPORA = Path(__file__).resolve().parents[3] / "shared" / "corpora"
FOLDERS = ["sotu", "email", "code", "udhr"]
pytestmark = pytest.mark.skipif(not CORPORA.is_dir(), reason="needs ../shared/corpora")


# --- the reference: the scoring as it was, position by position (copied, not imported) -------------


def reference_distributions(model: NgramEntropyModel, ctx: np.ndarray, level: np.ndarray) -> np.ndarray:
    dist = np.full((len(ctx), 256), 1.0 / 256)
    for k in range(model.order):
        table = model.tables[k]
        contexts = table["contexts"]
        if len(contexts) == 0:
            continue
        sub = ctx & ((1 << (8 * k)) - 1)
        where = np.minimum(np.searchsorted(contexts, sub), len(contexts) - 1)
        found = (level >= k) & (contexts[where] == sub)
        if not found.any():
            continue
        rows = np.flatnonzero(found)
        total = table["totals"][where[rows]].astype(np.float64)
        types = table["types"][where[rows]].astype(np.float64)
        counts = np.zeros((len(rows), 256))
        lo = np.searchsorted(table["keys"], sub[rows] << 8)
        n_seen = table["types"][where[rows]]
        idx = np.repeat(lo - np.cumsum(n_seen) + n_seen, n_seen) + np.arange(n_seen.sum())
        counts[np.repeat(np.arange(len(rows)), n_seen), table["keys"][idx] & 255] = table["counts"][idx]
        lower = dist[rows]
        denominator = (total + types)[:, None]
        if model.smoothing == "interpolated":
            dist[rows] = (counts + types[:, None] * lower) / denominator
        else:
            seen = counts > 0
            unseen_lower = np.where(seen, 0.0, lower)
            leftover = unseen_lower.sum(axis=1, keepdims=True)
            spread = np.divide(unseen_lower, leftover, out=np.zeros_like(lower), where=leftover > 0) * (types[:, None] / denominator)
            dist[rows] = np.where(seen, counts / denominator, spread)
    return dist


def reference_contexts(x: np.ndarray, lengths: np.ndarray, order: int) -> tuple[np.ndarray, np.ndarray]:
    """(packed context, level) at every position of documents laid end to end in `x`, as the old
    scorer packed them: no context crosses a document start."""
    starts = np.repeat(np.cumsum(lengths) - lengths, lengths)
    level = np.minimum(np.arange(len(x)) - starts, order - 1)
    ctx = np.zeros(len(x), dtype=np.int64)
    for i in range(1, order):
        shifted = np.zeros(len(x), dtype=np.int64)
        shifted[i:] = x[:-i].astype(np.int64)
        ctx |= np.where(level >= i, shifted, 0) << (8 * (i - 1))
    return ctx, level


def reference_scores(model: NgramEntropyModel, data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """(entropy, surprisal) of one document, as NgramEntropyModel.score computed them."""
    x = np.frombuffer(data, dtype=np.uint8)
    if len(x) == 0:
        return np.zeros(0), np.zeros(0)
    ctx, level = reference_contexts(x, np.array([len(x)]), model.order)
    unique, inverse = np.unique((ctx << 3) | level, return_inverse=True)
    entropy = np.empty(len(unique))
    surprisal = np.empty(len(x))
    for lo in range(0, len(unique), 4096):
        hi = min(lo + 4096, len(unique))
        dist = reference_distributions(model, unique[lo:hi] >> 3, (unique[lo:hi] & 7).astype(np.int64))
        with np.errstate(divide="ignore", invalid="ignore"):
            entropy[lo:hi] = -np.where(dist > 0, dist * np.log2(dist), 0.0).sum(axis=1)
        rows = np.flatnonzero((inverse >= lo) & (inverse < hi))
        surprisal[rows] = -np.log2(dist[inverse[rows] - lo, x[rows]])
    return entropy[inverse], surprisal


def reference_entropies_batch(model: NgramEntropyModel, docs: list[bytes], batch_bytes: int = 4 * 2**20) -> list[np.ndarray]:
    """The entropies as the old score_batch computed them: documents scored together per 4 MiB
    batch (the benchmark's 'before')."""
    out, batch, size = [], [], 0
    for d in docs + [None]:
        if d is not None:
            batch.append(d)
            size += len(d)
        if batch and (d is None or size >= batch_bytes):
            lengths = np.array([len(b) for b in batch], dtype=np.int64)
            x = np.frombuffer(b"".join(batch), dtype=np.uint8)
            ctx, level = reference_contexts(x, lengths, model.order)
            unique, inverse = np.unique((ctx << 3) | level, return_inverse=True)
            entropy = np.empty(len(unique))
            for lo in range(0, len(unique), 4096):
                hi = min(lo + 4096, len(unique))
                dist = reference_distributions(model, unique[lo:hi] >> 3, (unique[lo:hi] & 7).astype(np.int64))
                with np.errstate(divide="ignore", invalid="ignore"):
                    entropy[lo:hi] = -np.where(dist > 0, dist * np.log2(dist), 0.0).sum(axis=1)
            out += np.split(entropy[inverse], np.cumsum(lengths)[:-1])
            batch, size = [], 0
    return out


def reference_entropies(model: NgramEntropyModel, data: bytes) -> np.ndarray:
    return reference_scores(model, data)[0]


# --- fixtures: small models on real text -------------------------------------------------------


def sample(folder: str, max_bytes: int) -> list[bytes]:
    return [d.text.encode("utf-8") for d in toklab.open_corpus(str(CORPORA / folder), max_bytes=max_bytes)]


@pytest.fixture(scope="module")
def training() -> list[bytes]:
    return [d for f in FOLDERS for d in sample(f, 150_000)]


@pytest.fixture(scope="module")
def documents() -> dict[str, list[bytes]]:
    """Held-out documents of each corpus (past the training sample), as many scripts as udhr has."""
    out = {}
    for f in FOLDERS:
        docs = sample(f, 400_000)
        train = sum(len(d) for d in sample(f, 150_000))
        out[f] = [d for d in docs[len(sample(f, 150_000)) :] if d][:15] or docs[-5:]
        assert train and out[f]
    return out


@pytest.fixture(scope="module")
def models(training: list[bytes]) -> dict[tuple[int, str], NgramEntropyModel]:
    return {(order, smoothing): NgramEntropyModel.train(training, order=order, smoothing=smoothing)
            for order, smoothing in [(3, "interpolated"), (4, "interpolated"), (4, "backoff"), (6, "interpolated")]}  # fmt: skip


@pytest.mark.parametrize("key", [(3, "interpolated"), (4, "interpolated"), (4, "backoff"), (6, "interpolated")])
@pytest.mark.parametrize("folder", FOLDERS)
def test_entropies_and_bits_identical_to_reference(models, documents, key, folder):
    model = models[key]
    docs = documents[folder][:5] if key[0] == 6 else documents[folder]
    fast = model.entropies_batch(docs)
    scored = model.score_batch(docs)
    for doc, e, (e2, s) in zip(docs, fast, scored):
        ref_e, ref_s = reference_scores(model, doc)
        assert np.array_equal(e, ref_e)  # bit for bit
        assert np.array_equal(e2, ref_e)
        assert np.allclose(s, ref_s, rtol=1e-12, atol=0)
        assert model.bits(doc) == pytest.approx(float(ref_s.sum()), rel=1e-12)


def segmenter_for(model: NgramEntropyModel, training: list[bytes], **rule) -> EntropySegmenter:
    """A segmenter on `model` whose vocabulary is the frequent patches of the training text, as train picks them."""
    ent = [reference_entropies(model, d) for d in training[:60]]
    theta = float(np.quantile(np.concatenate(ent), 0.75))
    seg = EntropySegmenter(model, theta, rule.pop("rule", "global"), [], **rule)
    counts: dict[bytes, int] = {}
    for d, e in zip(training[:60], ent):
        for p in _cut(d, seg._starts(e, d)):
            counts[p] = counts.get(p, 0) + 1
    patches = sorted((p for p in counts if len(p) > 1), key=lambda p: (-counts[p], p))[:3000]
    return EntropySegmenter(model, theta, seg.rule, patches, relative=seg.relative, max_len=seg.max_len, split_utf8=seg.split_utf8)


@pytest.mark.parametrize("rule", [{}, {"rule": "monotonic"}, {"rule": "both", "relative": 0.5, "max_len": 6}, {"split_utf8": True}])
def test_encode_batch_identical_to_reference(models, training, documents, rule):
    model = models[(4, "interpolated")]
    seg = segmenter_for(model, training, **dict(rule))
    docs = [d for f in FOLDERS for d in documents[f]] + [b"", b"a", "\u00e9\u00e9".encode()]
    texts = [d.decode("utf-8") for d in docs]
    got = seg.encode_batch(texts)
    for doc, ids in zip(docs, got):
        e = reference_entropies(model, doc)
        starts = patch_starts(e, np.frombuffer(doc, dtype=np.uint8), seg.theta, seg.rule, relative=seg.relative, max_len=seg.max_len, split_utf8=seg.split_utf8)
        expected = []
        for piece in _cut(doc, starts):
            expected += [seg._ids[piece]] if piece in seg._ids else list(piece)
        assert ids == expected
        assert seg.decode(ids).encode() == doc
    assert sum(len(i) for i in got) < sum(map(len, docs)) * 0.97  # vocabulary patches were found


def test_chunked_long_document_equals_unchunked_reference(models, documents, monkeypatch):
    model = models[(4, "interpolated")]
    text = b"".join(d for f in FOLDERS for d in documents[f])
    long = (text * (3_000_000 // len(text) + 1))[:3_000_000]
    monkeypatch.setattr(entropy_models, "ENTROPY_CHUNK", 1_000_003)  # edges inside characters and contexts
    ref = reference_entropies(model, long)
    assert np.array_equal(model.entropies_batch([long])[0], ref)
    big = models[(6, "interpolated")]
    piece = long[:250_000]
    monkeypatch.setattr(entropy_models, "ENTROPY_CHUNK", 99_999)
    assert np.array_equal(big.entropies_batch([piece])[0], reference_entropies(big, piece))


def test_document_isolation(models, documents, monkeypatch):
    docs = [d.decode()[:n].encode() for d in documents["udhr"][:6] for n in (0, 1, 2, 3, 5, 400)] + documents["code"][:5]
    monkeypatch.setattr(entropy_models, "ENTROPY_CHUNK", 1000)
    for key in [(4, "interpolated"), (6, "interpolated")]:
        model = models[key]
        together = model.entropies_batch(docs)
        for doc, e in zip(docs, together):
            alone = model.entropies_batch([doc])[0]
            assert np.array_equal(e, alone)
            assert np.array_equal(e, reference_entropies(model, doc))
    model = models[(4, "interpolated")]
    seg = segmenter_for(model, documents["sotu"])
    monkeypatch.setattr(entropy_module, "SCORE_CHUNK_BYTES", 3000)
    texts = [d.decode() for d in docs]
    assert seg.encode_batch(texts) == [seg.encode_batch([t])[0] for t in texts]


def test_model_pickles_without_its_lookup_tables(models):
    import pickle

    model = models[(4, "interpolated")]
    model.entropies_batch([b"warm up"])
    copy = pickle.loads(pickle.dumps(model))
    assert copy._lookup is None and len(pickle.dumps(model)) < 64 * 2**20
    assert np.array_equal(copy.entropies_batch([b"the same text"])[0], model.entropies_batch([b"the same text"])[0])


def test_packed_contexts_put_the_nearest_byte_lowest_and_zeros_before_the_text():
    x = np.arange(1, 21, dtype=np.uint8)  # bytes 1..20
    # from position 2, three bytes of context: x[1], x[0], then nothing before the text (0)
    assert entropy_models._packed(x, 2, 5, 3).tolist() == [0x000102, 0x010203, 0x020304]
    assert entropy_models._packed(x, 0, 2, 2).tolist() == [0x0000, 0x0001]
    # far from the start, the widest context (7 bytes) and none at all
    assert entropy_models._packed(x, 12, 14, 7).tolist() == [0x060708090A0B0C, 0x0708090A0B0C0D]
    assert entropy_models._packed(x, 12, 14, 0).tolist() == [0, 0]
    assert entropy_models._packed(x, 19, 20, 1).tolist() == [19]
